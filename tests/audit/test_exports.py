"""``audit_export`` and offline verification: round trip, one-byte tampering, bad input."""

from __future__ import annotations

import json
import shutil

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from fhir.resources.R4B.bundle import Bundle
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from audit import keys
from audit.models import AuditEvent
from audit.offline import ExportInvalid, verify_export, verify_extension
from audit.offline import main as offline_main
from audit.services import seal_checkpoints
from tests.audit.conftest import append_events

pytestmark = pytest.mark.django_db


def export(out, *args: str) -> None:
    call_command("audit_export", "--out", str(out), *args)


def export_error(out, *args: str) -> str:
    with pytest.raises(CommandError) as failure:
        export(out, *args)
    return str(failure.value)


@pytest.fixture
def exported(tmp_path, settings):
    settings.AUDIT_CHECKPOINT_EVERY = 4
    append_events(10)
    seal_checkpoints()
    out = tmp_path / "export"
    export(out, "--format", "jsonl,csv,fhir")
    return out


def test_an_export_verifies_offline_with_the_public_key_alone(exported, capsys):
    summary = verify_export(exported)
    assert (summary.events, summary.first_sequence, summary.last_sequence) == (10, 1, 10)
    assert summary.checkpoints == 2 and summary.fingerprint == keys.key_fingerprint()
    call_command(
        "audit_verify", "--export", str(exported), "--public-key", str(exported / "public_key.pem")
    )
    assert "export intact: 10 events" in capsys.readouterr().out
    assert offline_main([str(exported)]) == 0


def test_the_export_contains_the_documented_files_and_manifest(exported):
    names = sorted(path.name for path in exported.iterdir())
    assert names == [
        "auditevents.fhir.json",
        "checkpoints.jsonl",
        "events.csv",
        "events.jsonl",
        "manifest.json",
        "public_key.pem",
    ]
    manifest = json.loads((exported / "manifest.json").read_text())
    assert manifest["chain_head"] == {
        "sequence": 10,
        "hash": AuditEvent.objects.get(sequence=10).hash,
    }
    assert manifest["counts"] == {"events": 10, "checkpoints": 2}
    assert manifest["filters"] == {"since": None, "until": None, "patient": None}
    for key in ("merkle_root", "signature", "public_key_fingerprint", "first_sequence"):
        assert manifest[key]
    first_line = json.loads((exported / "events.jsonl").read_text().splitlines()[0])
    assert first_line["hash"] == AuditEvent.objects.get(sequence=1).hash


def test_the_fhir_file_is_a_valid_r4_bundle_of_audit_events(exported):
    bundle = Bundle.model_validate_json((exported / "auditevents.fhir.json").read_text())
    assert len(bundle.entry) == 10
    first = bundle.entry[0].resource
    assert first.__resource_type__ == "AuditEvent" and first.action == "U"
    assert first.entity[0].what.reference == "Patient/1"


def test_exporting_is_itself_an_audited_event(exported):
    event = AuditEvent.objects.order_by("-sequence").first()
    assert (event.action, event.object_type, event.object_id) == (
        "export",
        "audit_export",
        "export",
    )
    assert event.detail["events"] == 10 and event.component.startswith("manage.py audit_export")


@hypothesis_settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_one_changed_byte_in_any_exported_file_is_rejected(exported, tmp_path_factory, data):
    copy = tmp_path_factory.mktemp("tampered") / "export"
    shutil.copytree(exported, copy)
    name = data.draw(
        st.sampled_from(
            [
                "events.jsonl",
                "events.csv",
                "auditevents.fhir.json",
                "checkpoints.jsonl",
                "manifest.json",
            ]
        )
    )
    content = bytearray((copy / name).read_bytes())
    position = data.draw(st.integers(0, len(content) - 1))
    content[position] = data.draw(st.integers(0, 255).filter(lambda b: b != content[position]))
    (copy / name).write_bytes(bytes(content))
    with pytest.raises(ExportInvalid):
        verify_export(copy)


def test_a_changed_event_is_named_by_its_sequence(exported):
    lines = (exported / "events.jsonl").read_text().splitlines(keepends=True)
    lines[6] = lines[6].replace('"new":7', '"new":8')
    (exported / "events.jsonl").write_text("".join(lines))
    with pytest.raises(CommandError, match="line 7: sequence 7: entry does not match its hash"):
        call_command("audit_verify", "--export", str(exported))


def test_an_export_re_signed_with_another_key_fails_against_the_pinned_key(
    exported, tmp_path, settings
):
    pinned = tmp_path / "pinned.pem"
    shutil.copy(exported / "public_key.pem", pinned)
    settings.AUDIT_SIGNING_KEY = __import__("audit.signing").signing.generate_private_key_pem()
    keys.clear_cache()
    other = tmp_path / "other"
    export(other)
    with pytest.raises(CommandError, match="not the expected key"):
        call_command("audit_verify", "--export", str(other), "--public-key", str(pinned))


def test_a_patient_filtered_export_holds_only_that_patients_events(exported, tmp_path):
    out = tmp_path / "patient"
    export(out, "--patient", "2", "--since", "2000-01-01", "--until", "2999-12-31")
    lines = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    assert [line["sequence"] for line in lines] == [2, 7]
    assert verify_export(out).events == 2


def test_a_later_export_is_shown_to_extend_an_earlier_one(exported, tmp_path, settings):
    append_events(6)
    seal_checkpoints()
    later = tmp_path / "later"
    export(later)
    assert "checkpoints 1-2 shared" in verify_extension(exported, later)
    with pytest.raises(ExportInvalid, match="head is behind"):
        verify_extension(later, exported)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--patient", "999"], "unknown patient 999"),
        (["--patient", "abc"], "patient must be a positive integer id"),
        (["--since", "2026-02-01", "--until", "2026-01-01"], "since must be before until"),
        (["--since", "01/02/2026"], "since must be a date (YYYY-MM-DD) or an ISO 8601 datetime"),
        (["--format", "xml"], "unknown format xml"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(journal, tmp_path, args, message):
    out = tmp_path / "out"
    count = AuditEvent.objects.count()
    error = export_error(out, *args)
    assert message in error and "\n" not in error
    assert not out.exists() and list(tmp_path.iterdir()) == [tmp_path / "data"]
    assert AuditEvent.objects.count() == count


def test_a_non_empty_destination_is_refused(journal, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    assert "exists and is not an empty directory" in export_error(out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_an_empty_existing_destination_is_used(journal, tmp_path):
    (tmp_path / "out").mkdir()
    export(tmp_path / "out")
    assert verify_export(tmp_path / "out").events == 20


def test_a_missing_signing_key_is_one_line_and_writes_nothing(exported, tmp_path, settings):
    (settings.DATA_DIR / "audit_signing_key.pem").unlink()
    keys.clear_cache()
    error = export_error(tmp_path / "again")
    assert error.startswith("audit signing key missing") and "\n" not in error
    assert not (tmp_path / "again").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".again")]
