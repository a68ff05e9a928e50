"""Compliance exports: files an auditor can verify offline (see offline.py), written atomically.

An export is a directory: ``events.jsonl`` (always — it is the evidence: one canonical entry per
line with its hash), optionally ``events.csv`` and ``auditevents.fhir.json``, the signed
``checkpoints.jsonl`` up to the journal head, ``public_key.pem`` and ``manifest.json`` (filters,
counts, sequence range, chain head, Merkle root of the exported hashes, per-file SHA-256, key
fingerprint, Ed25519 signature). Everything is written into a hidden sibling directory that is
renamed into place only once complete, in the same transaction as the export's own audit event:
a failure leaves nothing behind and no event.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import hashlib
import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.db import transaction
from django.utils import timezone

from audit import fhir, selectors
from audit.canonical import canonical_text, format_timestamp
from audit.keys import signing_key
from audit.merkle import MerkleAccumulator
from audit.models import Action
from audit.offline import manifest_layout
from audit.services import record_event
from audit.signing import SigningKeyError, fingerprint, public_pem, public_raw, sign
from audit.statements import MANIFEST_FORMAT, manifest_signing_bytes
from core.errors import DomainError
from core.moments import OUT_OF_RANGE_MESSAGE, in_utc

FORMATS = ("jsonl", "csv", "fhir")
CSV_COLUMNS = (
    "sequence",
    "occurred_at",
    "actor_id",
    "actor_role",
    "component",
    "action",
    "object_type",
    "object_id",
    "patient_id",
    "patient_ids",
    "outcome",
    "request_id",
    "client_address",
    "changes",
    "detail",
    "prev_hash",
    "hash",
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ExportError(DomainError):
    """Bad export input or an unusable destination; ``field`` names the input at fault."""


@dataclass(frozen=True)
class ExportFilters:
    since: dt.datetime | None = None
    until: dt.datetime | None = None  # exclusive
    patient_id: int | None = None
    formats: tuple[str, ...] = ("jsonl",)

    def as_manifest(self) -> dict[str, Any]:
        return {
            "since": format_timestamp(self.since) if self.since else None,
            "until": format_timestamp(self.until) if self.until else None,
            "patient": self.patient_id,
        }


def parse_moment(text: str, *, field: str, end_of_day: bool = False) -> dt.datetime:
    """``YYYY-MM-DD`` (UTC midnight; for ``until`` the whole day is included) or an ISO 8601
    datetime (without offset: UTC)."""
    text = text.strip()
    try:
        if _DATE.match(text):
            moment = dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), tzinfo=dt.UTC)
            moment = moment + dt.timedelta(days=1) if end_of_day else moment
        else:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
            moment = moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
    except (ValueError, OverflowError) as exc:  # OverflowError: the day after 9999-12-31
        raise ExportError(
            f"{field} must be a date (YYYY-MM-DD) or an ISO 8601 datetime, not {text!r}",
            field=field,
        ) from exc
    if in_utc(moment) is None:  # compared in UTC (core.moments)
        raise ExportError(f"{field} {OUT_OF_RANGE_MESSAGE}", field=field)
    return moment


def build_filters(
    *,
    since: str | dt.datetime | None = None,
    until: str | dt.datetime | None = None,
    patient: int | str | None = None,
    formats: str | list[str] | tuple[str, ...] | None = None,
) -> ExportFilters:
    """Validate raw input (CLI strings or API values) into filters; ``ExportError`` otherwise."""
    since_at = parse_moment(since, field="since") if isinstance(since, str) else since
    until_at = (
        parse_moment(until, field="until", end_of_day=True) if isinstance(until, str) else until
    )
    if since_at and until_at and since_at >= until_at:
        raise ExportError("since must be before until", field="until")
    patient_id = None
    if patient is not None and patient != "":
        try:
            patient_id = int(patient)
        except (TypeError, ValueError):
            patient_id = 0
        if patient_id < 1 or isinstance(patient, bool):
            raise ExportError(
                f"patient must be a positive integer id, not {patient!r}", field="patient"
            )
        if not selectors.is_known_patient(patient_id):
            raise ExportError(f"unknown patient {patient_id}", field="patient", code="not_found")
    names = formats.split(",") if isinstance(formats, str) else list(formats or [])
    names = [name.strip().lower() for name in names if name.strip()]
    unknown = sorted(set(names) - set(FORMATS))
    if unknown:
        raise ExportError(
            f"unknown format {', '.join(unknown)}; choose from {', '.join(FORMATS)}",
            field="formats",
        )
    chosen = tuple(name for name in FORMATS if name in {"jsonl", *names})
    return ExportFilters(since_at, until_at, patient_id, chosen)


def check_destination(out: Path) -> Path:
    out = Path(out).expanduser().absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not an empty directory", field="out")
    if not out.parent.is_dir():
        raise ExportError(f"parent directory {out.parent} does not exist", field="out")
    return out


def _digest(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def _csv_value(value: Any) -> Any:
    if isinstance(value, dict):
        return canonical_text(value)
    if isinstance(value, list):
        return ";".join(str(item) for item in value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # no formula execution when opened in a spreadsheet (OWASP)
    return "" if value is None else value


def _write_events(directory: Path, filters: ExportFilters, head: int) -> dict[str, Any]:
    events = selectors.events_concerning(
        since=filters.since, until=filters.until, patient_id=filters.patient_id, up_to_sequence=head
    ).values_list("entry", "hash")
    tree, first, last = MerkleAccumulator(), None, None
    with (
        (directory / "events.jsonl").open("w", encoding="utf-8", newline="\n") as jsonl,
        (directory / "events.csv").open("w", encoding="utf-8", newline="") as csv_handle,
        (directory / "auditevents.fhir.json").open("w", encoding="utf-8") as fhir_handle,
    ):
        writer = csv.writer(csv_handle)
        writer.writerow(CSV_COLUMNS)
        bundle = fhir.BundleWriter(fhir_handle)
        for entry_text, stored_hash in events.iterator(chunk_size=2000):
            entry = json.loads(entry_text)
            jsonl.write(canonical_text({**entry, "hash": stored_hash}) + "\n")
            if "csv" in filters.formats:
                row = {**entry, "hash": stored_hash}
                writer.writerow([_csv_value(row[column]) for column in CSV_COLUMNS])
            if "fhir" in filters.formats:
                bundle.add(fhir.to_fhir(entry, stored_hash))
            tree.add(bytes.fromhex(stored_hash))
            first = entry["sequence"] if first is None else first
            last = entry["sequence"]
        bundle.close()
    for name, fmt in (("events.csv", "csv"), ("auditevents.fhir.json", "fhir")):
        if fmt not in filters.formats:
            (directory / name).unlink()
    return {"count": tree.size, "first": first, "last": last, "root": tree.root().hex()}


def write_export(
    out: Path, filters: ExportFilters, *, actor: Any = None, component: str = ""
) -> dict[str, Any]:
    """Write a signed export into ``out`` (absent or empty) and journal it; returns the manifest."""
    out = check_destination(out)
    try:
        key = signing_key()
    except SigningKeyError as exc:
        raise ExportError(str(exc), field=None, code="signing_key") from exc
    public = public_raw(key)
    heads = selectors.chain_heads()
    head_sequence, head_hash = selectors.chain_head()
    single = selectors.is_single_chain(heads, (head_sequence, head_hash))
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        summary = _write_events(staging, filters, head_sequence)
        checkpoints = [row.as_record() for row in selectors.checkpoints_up_to(heads)]
        (staging / "checkpoints.jsonl").write_text(
            "".join(canonical_text(row) + "\n" for row in checkpoints), encoding="utf-8"
        )
        (staging / "public_key.pem").write_text(public_pem(key), encoding="ascii")
        files = sorted(path.name for path in staging.iterdir())
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            # Version 2: several chains (docs/audit.md, "Chains"), their heads listed.
            "version": 1 if single else 2,
            "created_at": format_timestamp(timezone.now()),
            "filters": filters.as_manifest(),
            "formats": list(filters.formats),
            "counts": {"events": summary["count"], "checkpoints": len(checkpoints)},
            "first_sequence": summary["first"],
            "last_sequence": summary["last"],
            "chain_head": {"sequence": head_sequence, "hash": head_hash},
            "merkle_root": summary["root"],
            **(
                {}
                if single
                else {
                    "chain_heads": {
                        str(chain): {"sequence": position, "hash": last_hash}
                        for chain, (position, last_hash) in heads.items()
                    }
                }
            ),
            "files": {name: _digest(staging / name) for name in files},
            "public_key": base64.b64encode(public).decode("ascii"),
            "public_key_fingerprint": fingerprint(public),
        }
        manifest["signature"] = sign(key, manifest_signing_bytes(manifest))
        (staging / "manifest.json").write_text(manifest_layout(manifest), encoding="utf-8")
        with transaction.atomic():
            record_event(
                action=Action.EXPORT,
                actor=actor,
                component=component,
                object_type="audit_export",
                object_id=out.name,
                patient_id=filters.patient_id,
                detail={
                    "filters": filters.as_manifest(),
                    "formats": list(filters.formats),
                    "events": summary["count"],
                    "first_sequence": summary["first"],
                    "last_sequence": summary["last"],
                    "chain_head": head_sequence,
                    "merkle_root": summary["root"],
                    "signature": manifest["signature"],
                },
            )
            if out.exists():
                out.rmdir()
            staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest
