"""Ed25519 signatures over checkpoints and export manifests. Pure Python (no Django).

Ed25519 because the signatures are small (64 bytes), verification needs only a 32-byte public
key that can be printed in a compliance report, and there are no parameters to get wrong.
The key's *fingerprint* is ``sha256(raw 32-byte public key)`` in hex; it is what an auditor
compares with the one the operator published.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


class SigningKeyError(ValueError):
    """The signing key is missing, unreadable or not an Ed25519 key."""


def parse_private_key(text: str) -> Ed25519PrivateKey:
    """Accept a PKCS#8 PEM Ed25519 private key, or base64 (standard or URL-safe) of the raw
    32-byte seed. Anything else is refused with a message that names the accepted forms."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(f"AUDIT_SIGNING_KEY is not a readable PEM key ({exc})") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError("AUDIT_SIGNING_KEY is a PEM key but not an Ed25519 key")
        return key
    try:
        padded = text + "=" * (-len(text) % 4)
        seed = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        seed = b""
    if len(seed) != 32:
        raise SigningKeyError(
            "AUDIT_SIGNING_KEY must be an Ed25519 private key in PEM (PKCS#8) "
            "or the base64 of its 32-byte seed"
        )
    return Ed25519PrivateKey.from_private_bytes(seed)


def generate_private_key_pem() -> str:
    key = Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


def public_raw(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_pem(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")


def fingerprint(public_key_raw: bytes) -> str:
    return hashlib.sha256(public_key_raw).hexdigest()


def load_public_key(data: bytes | str) -> Ed25519PublicKey:
    """A public key from PEM, or from base64 of the raw 32 bytes (as in ``manifest.json``)."""
    text = data.decode("ascii", "replace") if isinstance(data, bytes) else data
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode("ascii"))
        except ValueError as exc:
            raise SigningKeyError(f"not a readable PEM public key ({exc})") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError("the public key is not an Ed25519 key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SigningKeyError("the public key is neither PEM nor base64") from exc
    if len(raw) != 32:
        raise SigningKeyError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(key.sign(message)).decode("ascii")


def verify(public_key: Ed25519PublicKey, message: bytes, signature_b64: str) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        public_key.verify(signature, message)
    except (InvalidSignature, binascii.Error, ValueError, TypeError):
        return False
    return True
