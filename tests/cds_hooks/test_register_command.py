"""``manage.py register_cds_client``: an operator registers an EHR without a shell session; bad
input is one readable line and registers nothing."""

from __future__ import annotations

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditEvent
from clinaiops.cds_hooks.models import CdsClient, CdsPractitioner
from tests.cds_hooks.conftest import new_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def jwks_file(tmp_path):
    path = tmp_path / "ehr.jwks.json"
    path.write_text(json.dumps({"keys": [json.loads(new_key().export_public())]}))
    return path


def test_an_ehr_is_registered_with_its_practitioners_and_journalled(
    admin_user, team_a, clinician_a, jwks_file, capsys
):
    call_command(
        "register_cds_client",
        "--admin", admin_user.username,
        "--name", "County EHR",
        "--issuer", "https://ehr.example.org",
        "--jwks", str(jwks_file),
        "--care-team", team_a.name,
        "--origin", "https://ehr.example.org",
        "--practitioner", f"Practitioner/42={clinician_a.username}",
        "--json",
    )  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    client = CdsClient.objects.get(pk=out["id"])
    assert client.issuer == "https://ehr.example.org"
    assert list(client.care_teams.all()) == [team_a]
    assert CdsPractitioner.objects.get(client=client).user == clinician_a
    assert AuditEvent.objects.filter(object_type="cds_client", actor=admin_user).exists()


def test_bad_input_is_one_line_and_registers_nothing(admin_user, team_a, clinician_a, tmp_path):
    private = tmp_path / "private.json"
    private.write_text(json.dumps({"keys": [json.loads(new_key().export_private())]}))
    cases = [
        (["--jwks", str(tmp_path / "missing.json")], "--jwks"),
        (["--jwks", str(private)], "--jwks: Only public keys belong in the key set."),
        (["--care-team", "Nobody"], "--care-team Nobody: no active care team"),
        (["--practitioner", "Practitioner/42=ghost"], "--practitioner Practitioner/42=ghost"),
        (["--practitioner", f"Doctor/42={clinician_a.username}"], "--reference: A practitioner"),
    ]
    for extra, message in cases:
        args = {
            "--admin": admin_user.username,
            "--name": "County EHR",
            "--issuer": "https://ehr.example.org",
            "--care-team": team_a.name,
        }
        argv = [item for pair in args.items() for item in pair]
        if "--jwks" not in extra:
            good = tmp_path / "good.json"
            good.write_text(json.dumps({"keys": [json.loads(new_key().export_public())]}))
            argv += ["--jwks", str(good)]
        with pytest.raises(CommandError) as refused:
            call_command("register_cds_client", *argv, *extra)
        assert str(refused.value).startswith(message), (extra, str(refused.value))
        assert "\n" not in str(refused.value)
    assert not CdsClient.objects.exists() and not CdsPractitioner.objects.exists()
