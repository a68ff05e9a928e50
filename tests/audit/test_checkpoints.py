"""Signed checkpoints: sealing, verification from the last good one, and the signing key."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.core.management.base import CommandError

from audit import keys
from audit.canonical import entry_hash
from audit.merkle import merkle_root
from audit.models import Checkpoint
from audit.services import seal_checkpoints
from audit.signing import SigningKeyError, generate_private_key_pem, load_public_key, verify
from audit.verification import verify_journal
from tests.audit.conftest import append_events, sql

pytestmark = pytest.mark.django_db


@pytest.fixture
def sealed(settings):
    """22 events in blocks of 5: checkpoints 1-4 cover sequence 1-20."""
    settings.AUDIT_CHECKPOINT_EVERY = 5
    events = append_events(22)
    seal_checkpoints()
    return events


def test_each_complete_block_gets_one_signed_checkpoint(sealed):
    checkpoints = list(Checkpoint.objects.all())
    assert [(c.first_sequence, c.last_sequence) for c in checkpoints] == [
        (1, 5),
        (6, 10),
        (11, 15),
        (16, 20),
    ]
    second = checkpoints[1]
    assert second.merkle_root == merkle_root([bytes.fromhex(e.hash) for e in sealed[5:10]]).hex()
    assert second.chain_hash == sealed[9].hash
    assert second.prev_checkpoint == checkpoints[0].statement().digest()
    key = load_public_key(second.public_key)
    assert verify(key, second.statement().to_bytes(), second.signature)
    assert seal_checkpoints() == []  # idempotent


def test_sealing_runs_when_an_append_completes_a_block(
    settings, django_capture_on_commit_callbacks
):
    settings.AUDIT_CHECKPOINT_EVERY = 4
    with django_capture_on_commit_callbacks(execute=True):
        append_events(9)
    assert Checkpoint.objects.count() == 2


def test_default_verification_starts_after_the_last_checkpoint(sealed):
    result = verify_journal()
    assert result.ok and (result.start_sequence, result.verified, result.checkpoints) == (21, 2, 4)
    assert verify_journal(full=True).verified == 22


def test_an_old_edit_is_found_by_full_verification(sealed, triggers_dropped):
    sql(
        "UPDATE audit_auditevent SET entry = replace(entry, '\"new\":3', '\"new\":4') "
        "WHERE sequence = 3"
    )
    with pytest.raises(CommandError, match="sequence 3: entry does not match its hash"):
        call_command("audit_verify", "--full")


def test_a_rewritten_block_with_recomputed_chain_fails_its_signed_checkpoint(
    sealed, triggers_dropped
):
    """Recomputing every later hash keeps the chain consistent; the signature still catches it."""
    prev = sealed[6].hash
    for event in sealed[7:]:
        text = event.entry.replace(f'"prev_hash":"{event.prev_hash}"', f'"prev_hash":"{prev}"')
        if event.sequence == 8:
            text = text.replace('"new":8', '"new":80')
        new_hash = entry_hash(text)
        sql(
            "UPDATE audit_auditevent SET entry = %s, hash = %s, prev_hash = %s WHERE sequence = %s",
            [text, new_hash, prev, event.sequence],
        )
        prev = new_hash
    sql("UPDATE audit_chainhead SET last_hash = %s", [prev])
    expected = "audit chain broken at sequence 6: sequence 6-10 does not match signed checkpoint 2"
    assert verify_journal(full=True).line().startswith(expected)
    assert verify_journal().line().startswith(expected)


def test_a_forged_checkpoint_signature_is_detected(sealed, triggers_dropped):
    sql('UPDATE audit_checkpoint SET merkle_root = %s WHERE "index" = 3', ["0" * 64])
    with pytest.raises(CommandError, match="sequence 11: checkpoint 3 signature does not verify"):
        call_command("audit_verify")


def test_a_checkpoint_signed_by_another_key_is_untrusted(sealed, settings):
    settings.AUDIT_SIGNING_KEY = generate_private_key_pem()
    keys.clear_cache()
    assert "signed by an untrusted key" in verify_journal().line()
    settings.AUDIT_RETIRED_PUBLIC_KEYS = [Checkpoint.objects.first().public_key]
    assert verify_journal().ok


def test_the_key_is_generated_once_into_the_data_directory_with_mode_0600(settings):
    key = keys.signing_key()
    path = settings.DATA_DIR / "audit_signing_key.pem"
    assert path.stat().st_mode & 0o777 == 0o600
    keys.clear_cache()
    assert keys.key_fingerprint() == keys.key_fingerprint() and keys.signing_key() is not key


@pytest.mark.parametrize("form", ["pem", "base64"])
def test_the_key_may_come_from_settings_as_pem_or_base64_seed(settings, form):
    private = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    settings.AUDIT_SIGNING_KEY = (
        generate_private_key_pem() if form == "pem" else base64.b64encode(bytes(range(32))).decode()
    )
    loaded = keys.signing_key()
    if form == "base64":
        assert loaded.sign(b"x") == private.sign(b"x")
    assert not (settings.DATA_DIR / "audit_signing_key.pem").exists()


def test_a_malformed_key_setting_is_one_clear_error(settings):
    settings.AUDIT_SIGNING_KEY = "not-a-key"
    with pytest.raises(SigningKeyError, match=r"PEM .* or the base64 of its 32-byte seed"):
        keys.signing_key()


def test_a_lost_key_is_not_silently_replaced_when_checkpoints_exist(sealed, settings):
    (settings.DATA_DIR / "audit_signing_key.pem").unlink()
    keys.clear_cache()
    with pytest.raises(CommandError, match="audit signing key missing"):
        call_command("audit_verify")


def test_events_archived_up_to_a_checkpoint_leave_a_verifiable_remainder(sealed, triggers_dropped):
    """docs/audit.md, Retention: delete through the end of a checkpoint, verification anchors on
    its signed chain hash; deleting through a point inside a block is reported."""
    sql("DELETE FROM audit_auditevent WHERE sequence <= 10")
    assert verify_journal(full=True).ok
    sql("DELETE FROM audit_auditevent WHERE sequence <= 12")
    assert verify_journal(full=True).failure.sequence == 11
