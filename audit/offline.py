"""Verify an export directory offline, with the public key alone — no database, no Django.

An auditor can run it from a copy of this package (``python -m audit.offline DIR
[--public-key FILE] [--extends OLDER_DIR]``) or through ``manage.py audit_verify --export DIR``.
The checks, in order (the first failure is reported, as one line):

1. ``manifest.json`` parses, is signed by the key (pinned with ``--public-key``, otherwise the one
   in the manifest, whose fingerprint is printed for comparison with the published one);
2. every line of ``events.jsonl`` is canonical, matches its hash, links to its predecessor where
   sequences are consecutive, and falls inside the export's filters;
3. counts, sequence range and the Merkle root of the exported hashes equal the manifest's;
4. every other file's SHA-256 equals the manifest's;
5. ``checkpoints.jsonl`` is a chain of signed statements, and every checkpoint block that the
   export contains in full has the Merkle root and chain hash the checkpoint signed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from audit.canonical import GENESIS_HASH, canonical_text, parse_timestamp
from audit.chain import ChainChecker
from audit.merkle import MerkleAccumulator
from audit.signing import SigningKeyError, fingerprint, load_public_key, public_raw, verify
from audit.statements import MANIFEST_FORMAT, CheckpointStatement, manifest_signing_bytes

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

EVENTS_FILE = "events.jsonl"
CHECKPOINTS_FILE = "checkpoints.jsonl"
MANIFEST_FILE = "manifest.json"


class ExportInvalid(Exception):
    """The export fails verification; the message is the one line to print."""


@dataclass(frozen=True)
class ExportSummary:
    events: int
    first_sequence: int | None
    last_sequence: int | None
    head_sequence: int
    checkpoints: int
    fingerprint: str

    def __str__(self) -> str:
        span = f"sequence {self.first_sequence}-{self.last_sequence}" if self.events else "empty"
        return (
            f"export intact: {self.events} events ({span}), {self.checkpoints} checkpoints, "
            f"journal head {self.head_sequence}, signed by key {self.fingerprint}"
        )


def _load_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST_FILE
    try:
        text = path.read_text(encoding="utf-8")
        manifest = json.loads(text)
    except FileNotFoundError as exc:
        raise ExportInvalid(f"{path}: no manifest.json (not an audit export?)") from exc
    except (OSError, ValueError) as exc:
        raise ExportInvalid(f"{path}: unreadable manifest ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ExportInvalid(f"{path}: not a {MANIFEST_FORMAT} manifest")
    if text != manifest_layout(manifest):
        raise ExportInvalid(f"{path}: not in the exact layout it was written in (edited?)")
    if manifest.get("version") not in (1, 2):
        raise ExportInvalid(f"{path}: unsupported export version {manifest.get('version')!r}")
    return manifest


def manifest_layout(manifest: dict[str, Any]) -> str:
    """The one byte layout of manifest.json (readable, and any changed byte is detected)."""
    return json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def _check_signature(
    manifest: dict[str, Any], pinned_key: Ed25519PublicKey | None
) -> tuple[Ed25519PublicKey, str]:
    try:
        key = pinned_key or load_public_key(manifest.get("public_key", ""))
    except SigningKeyError as exc:
        raise ExportInvalid(f"manifest.json: {exc}") from exc
    key_fingerprint = fingerprint(public_raw(key))
    if manifest.get("public_key_fingerprint") != key_fingerprint:
        raise ExportInvalid(
            f"manifest.json: signed for key {manifest.get('public_key_fingerprint')}, "
            f"not the expected key {key_fingerprint}"
        )
    if not verify(key, manifest_signing_bytes(manifest), str(manifest.get("signature", ""))):
        raise ExportInvalid("manifest.json: signature does not verify")
    return key, key_fingerprint


def _file_digest(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _check_files(directory: Path, manifest: dict[str, Any]) -> None:
    files = manifest.get("files") or {}
    if EVENTS_FILE not in files:
        raise ExportInvalid("manifest.json lists no events.jsonl")
    for name, expected in sorted(files.items()):
        path = directory / name
        if Path(name).name != name or not path.is_file():
            raise ExportInvalid(f"{name}: listed in the manifest but missing")
        if _file_digest(path) != (expected.get("sha256"), expected.get("bytes")):
            raise ExportInvalid(f"{name}: content differs from the signed manifest (sha256)")


def _load_checkpoints(
    directory: Path, trusted: set[str], keys: dict[str, Any]
) -> list[dict[str, Any]]:
    path = directory / CHECKPOINTS_FILE
    if not path.exists():
        return []
    checkpoints: list[dict[str, Any]] = []
    prev = GENESIS_HASH
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            row = json.loads(line.decode("utf-8"))
            fields = {**row, "chain": row.get("chain", 1)}  # version 1: chain 1
            if row.get("v") != (1 if fields["chain"] == 1 else 2):
                raise ValueError(f"checkpoint version {row.get('v')!r}")
            statement = CheckpointStatement(
                **{key: fields[key] for key in CheckpointStatement.__dataclass_fields__}
            )
            public_key = load_public_key(row["public_key"])
        except (ValueError, KeyError, TypeError, SigningKeyError) as exc:
            raise ExportInvalid(f"{CHECKPOINTS_FILE} line {number}: unreadable ({exc})") from exc
        key_fingerprint = fingerprint(public_raw(public_key))
        if key_fingerprint != statement.key_fingerprint or key_fingerprint not in trusted:
            raise ExportInvalid(f"checkpoint {statement.index}: signed by an untrusted key")
        if not verify(public_key, statement.to_bytes(), row.get("signature", "")):
            raise ExportInvalid(f"checkpoint {statement.index}: signature does not verify")
        if statement.index != number or statement.prev_checkpoint != prev:
            raise ExportInvalid(
                f"checkpoint {statement.index}: does not follow checkpoint {number - 1}"
            )
        prev = statement.digest()
        keys[key_fingerprint] = public_key
        checkpoints.append({**row, "_digest": prev})
    return checkpoints


def _in_filters(entry: dict[str, Any], filters: dict[str, Any]) -> bool:
    occurred_at = parse_timestamp(entry["occurred_at"])
    since, until, patient = filters.get("since"), filters.get("until"), filters.get("patient")
    if since and occurred_at < parse_timestamp(since):
        return False
    if until and occurred_at >= parse_timestamp(until):
        return False
    return patient is None or patient in entry.get("patient_ids", [])


def _check_events(
    directory: Path, manifest: dict[str, Any], checkpoints: list[dict[str, Any]]
) -> int:
    by_first = {(row.get("chain", 1), row["first_sequence"]): row for row in checkpoints}
    filters = manifest.get("filters") or {}
    # One checker per chain (a version 1 entry is chain 1 at its own sequence); the lines come in
    # journal order, so ``sequence`` must increase from line to line.
    checkers: dict[int, ChainChecker] = {}
    blocks: dict[int, tuple[dict[str, Any], MerkleAccumulator]] = {}
    accumulator = MerkleAccumulator()
    first: int | None = None
    last: int | None = None
    with (directory / EVENTS_FILE).open("rb") as handle:
        for number, raw_line in enumerate(handle, start=1):
            where = f"{EVENTS_FILE} line {number}"
            try:
                line = raw_line.decode("utf-8")
                entry = json.loads(line)
                stored_hash = entry.pop("hash")
                sequence = entry["sequence"]
                chain = entry.get("chain", 1)
                position = entry.get("chain_sequence", sequence)
                entry_text = canonical_text(entry)
                is_canonical = canonical_text({**entry, "hash": stored_hash}) + "\n" == line
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                after = f" (after sequence {last})" if last is not None else ""
                raise ExportInvalid(f"{where}{after}: not an audit entry ({exc})") from exc
            if not is_canonical:
                raise ExportInvalid(f"{where}: sequence {sequence}: not in canonical form")
            if not isinstance(sequence, int) or (last is not None and sequence <= last):
                raise ExportInvalid(f"{where}: sequence {sequence}: out of order or duplicated")
            checker = checkers.setdefault(chain, ChainChecker(contiguous=False))
            previous = checker.last_sequence
            failure = checker.feed(position, stored_hash, entry_text)
            if failure is not None:
                named = f"chain {chain} " if chain != 1 or position != sequence else ""
                raise ExportInvalid(f"{where}: {named}{failure}")
            try:
                inside = _in_filters(entry, filters)
            except (KeyError, ValueError, TypeError) as exc:
                raise ExportInvalid(f"{where}: sequence {sequence}: malformed entry") from exc
            if not inside:
                raise ExportInvalid(f"{where}: sequence {sequence}: outside the export's filters")
            accumulator.add(bytes.fromhex(stored_hash))
            first = sequence if first is None else first
            if chain in blocks and position != previous + 1:
                del blocks[chain]
            if (chain, position) in by_first:
                blocks[chain] = (by_first[chain, position], MerkleAccumulator())
            if chain in blocks:
                block, block_tree = blocks[chain]
                block_tree.add(bytes.fromhex(stored_hash))
                if position == block["last_sequence"]:
                    if (block_tree.root().hex(), stored_hash) != (
                        block["merkle_root"],
                        block["chain_hash"],
                    ):
                        raise ExportInvalid(
                            f"sequence {block['first_sequence']}-{position}: "
                            f"does not match signed checkpoint {block['index']}"
                        )
                    del blocks[chain]
            last = sequence
    expected = (
        manifest.get("counts", {}).get("events"),
        manifest.get("first_sequence"),
        manifest.get("last_sequence"),
        manifest.get("merkle_root"),
    )
    if (accumulator.size, first, last, accumulator.root().hex()) != expected:
        raise ExportInvalid(
            f"{EVENTS_FILE}: events differ from the manifest (count, range or Merkle root)"
        )
    return accumulator.size


def verify_export(
    directory: Path | str,
    *,
    public_key: Ed25519PublicKey | None = None,
    trusted_fingerprints: Iterable[str] = (),
) -> ExportSummary:
    """Verify one export; raise ``ExportInvalid`` with a one-line reason at the first failure."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ExportInvalid(f"{directory}: not a directory")
    manifest = _load_manifest(directory)
    _, key_fingerprint = _check_signature(manifest, public_key)
    trusted = {
        key_fingerprint,
        *trusted_fingerprints,
        *manifest.get("retired_key_fingerprints", []),
    }
    checkpoints = _load_checkpoints(directory, trusted, {})
    if len(checkpoints) != manifest.get("counts", {}).get("checkpoints", 0):
        raise ExportInvalid(f"{CHECKPOINTS_FILE}: checkpoint count differs from the manifest")
    events = _check_events(directory, manifest, checkpoints)
    _check_files(directory, manifest)
    head = manifest.get("chain_head") or {}
    return ExportSummary(
        events=events,
        first_sequence=manifest.get("first_sequence"),
        last_sequence=manifest.get("last_sequence"),
        head_sequence=head.get("sequence", 0),
        checkpoints=len(checkpoints),
        fingerprint=key_fingerprint,
    )


def verify_extension(
    older: Path | str, newer: Path | str, *, public_key: Ed25519PublicKey | None = None
) -> str:
    """Show that ``newer`` extends ``older``: both verify, the older checkpoints are a prefix of
    the newer ones, and every entry present in both has the same hash."""
    old_summary = verify_export(older, public_key=public_key)
    new_summary = verify_export(newer, public_key=public_key)
    old_dir, new_dir = Path(older), Path(newer)
    old_manifest, new_manifest = _load_manifest(old_dir), _load_manifest(new_dir)
    if new_manifest["chain_head"]["sequence"] < old_manifest["chain_head"]["sequence"]:
        raise ExportInvalid("the newer export's journal head is behind the older one's")
    old_lines = _lines(old_dir / CHECKPOINTS_FILE)
    if _lines(new_dir / CHECKPOINTS_FILE)[: len(old_lines)] != old_lines:
        raise ExportInvalid("the older export's checkpoints are not a prefix of the newer one's")
    new_hashes = _hashes(new_dir)
    old_head = old_manifest["chain_head"]
    for sequence, stored_hash in {
        **_hashes(old_dir),
        old_head["sequence"]: old_head["hash"],
    }.items():
        if sequence in new_hashes and new_hashes[sequence] != stored_hash:
            raise ExportInvalid(f"sequence {sequence}: differs between the two exports (fork)")
    if old_head["sequence"] == new_manifest["chain_head"]["sequence"] and (
        old_head["hash"] != new_manifest["chain_head"]["hash"]
    ):
        raise ExportInvalid(f"sequence {old_head['sequence']}: chain heads differ (fork)")
    return (
        f"export extends the older one: checkpoints 1-{old_summary.checkpoints} shared, "
        f"head {old_summary.head_sequence} -> {new_summary.head_sequence}"
    )


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ExportInvalid(f"{path.name}: not UTF-8") from exc


def _hashes(directory: Path) -> dict[int, str]:
    hashes: dict[int, str] = {}
    for line in _lines(directory / EVENTS_FILE):
        entry = json.loads(line)
        hashes[entry["sequence"]] = entry["hash"]
    return hashes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify a ClinAIOps audit export offline.")
    parser.add_argument("directory")
    parser.add_argument("--public-key", help="PEM file of the expected signing key")
    parser.add_argument("--extends", metavar="OLDER_DIR", help="also prove DIR extends this export")
    args = parser.parse_args(argv)
    try:
        key = load_public_key(Path(args.public_key).read_bytes()) if args.public_key else None
        if args.extends:
            print(verify_extension(args.extends, args.directory, public_key=key))
        else:
            print(verify_export(args.directory, public_key=key))
    except (ExportInvalid, SigningKeyError, OSError) as exc:
        print(f"export invalid: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
