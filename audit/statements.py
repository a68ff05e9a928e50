"""The signed statements: checkpoints (signed tree heads of a block) and export manifests.

Pure Python. A checkpoint statement commits to a block of entries twice: the RFC 6962 Merkle
root of their hashes, and the chain hash of the block's last entry (which itself commits to
every entry before it). Each statement also names the digest of the previous statement, so
the checkpoints form their own chain and an earlier list of checkpoints must be a prefix of
any later one (that is how one export is shown to extend another).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

from audit.canonical import GENESIS_HASH, canonical_bytes

CHECKPOINT_TYPE = "clinaiops.audit.checkpoint"
MANIFEST_FORMAT = "clinaiops-audit-export"


@dataclass(frozen=True)
class CheckpointStatement:
    index: int
    first_sequence: int
    last_sequence: int
    merkle_root: str
    chain_hash: str
    prev_checkpoint: str
    key_fingerprint: str
    # The chain whose positions ``first_sequence..last_sequence`` are sealed. Chain 1 keeps the
    # version 1 form (no ``chain`` key), so checkpoints signed before chains existed verify.
    chain: int = 1

    def to_bytes(self) -> bytes:
        fields = asdict(self)
        if self.chain == 1:
            del fields["chain"]
            return canonical_bytes({"type": CHECKPOINT_TYPE, "v": 1, **fields})
        return canonical_bytes({"type": CHECKPOINT_TYPE, "v": 2, **fields})

    def digest(self) -> str:
        return hashlib.sha256(self.to_bytes()).hexdigest()


def first_prev_checkpoint() -> str:
    return GENESIS_HASH


def manifest_signing_bytes(manifest: dict[str, Any]) -> bytes:
    """What the manifest signature covers: the manifest in canonical form without ``signature``."""
    unsigned = {key: value for key, value in manifest.items() if key != "signature"}
    return canonical_bytes(unsigned)
