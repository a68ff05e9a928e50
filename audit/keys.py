"""Where the journal's Ed25519 signing key comes from, loaded lazily (never at import).

Order: ``settings.AUDIT_SIGNING_KEY`` (PEM, or base64 of the 32-byte seed — usually from the
environment variable of the same name); otherwise the file ``DATA_DIR/audit_signing_key.pem``,
created (mode 0600) on first use. A key is *not* generated when checkpoints signed by some key
already exist: a silently new key would orphan them, so that case is an error ("missing key").
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from django.conf import settings

from audit.signing import (
    SigningKeyError,
    fingerprint,
    generate_private_key_pem,
    load_public_key,
    parse_private_key,
    public_raw,
)

KEY_FILENAME = "audit_signing_key.pem"


def key_path() -> Path:
    return Path(settings.DATA_DIR) / KEY_FILENAME


def _configured_text() -> str | None:
    value = getattr(settings, "AUDIT_SIGNING_KEY", None)
    return value.strip() if isinstance(value, str) and value.strip() else None


def signing_key() -> Ed25519PrivateKey:
    """The private key, or ``SigningKeyError`` with one line saying what is wrong."""
    return _load(_configured_text(), str(key_path()))


@lru_cache(maxsize=4)
def _load(configured: str | None, path_text: str) -> Ed25519PrivateKey:
    if configured:
        return parse_private_key(configured)
    path = Path(path_text)
    if not path.exists():
        _generate(path)
    try:
        return parse_private_key(path.read_text(encoding="ascii"))
    except OSError as exc:
        raise SigningKeyError(f"audit signing key {path} is unreadable ({exc.strerror})") from exc


def _generate(path: Path) -> None:
    from audit.models import Checkpoint

    existing = (
        Checkpoint.objects.order_by("-index").values_list("key_fingerprint", flat=True).first()
    )
    if existing:
        raise SigningKeyError(
            f"audit signing key missing: AUDIT_SIGNING_KEY is unset and {path} does not exist, "
            f"but checkpoints are signed with key {existing}; restore that key"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return  # another process generated it first; read theirs
    except OSError as exc:
        raise SigningKeyError(
            f"cannot create the audit signing key {path} ({exc.strerror})"
        ) from exc
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(generate_private_key_pem())


def public_key() -> Ed25519PublicKey:
    return signing_key().public_key()


def key_fingerprint() -> str:
    return fingerprint(public_raw(signing_key()))


def trusted_fingerprints() -> set[str]:
    """The current key plus retired keys still trusted for old checkpoints
    (``settings.AUDIT_RETIRED_PUBLIC_KEYS``: PEM or base64 raw public keys)."""
    trusted = {key_fingerprint()}
    for text in getattr(settings, "AUDIT_RETIRED_PUBLIC_KEYS", []) or []:
        trusted.add(fingerprint(public_raw(load_public_key(text))))
    return trusted


def clear_cache() -> None:
    """Forget loaded keys (tests that switch keys or data directories)."""
    _load.cache_clear()
