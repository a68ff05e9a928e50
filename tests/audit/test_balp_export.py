"""The FHIR file of an export follows BALP, and the chain still verifies: the hash covers the
journal entry, never its rendering."""

from __future__ import annotations

import base64
import json

import pytest
from django.core.management import call_command
from fhir.resources.R4B.bundle import Bundle

from audit.canonical import canonical_text, entry_hash
from audit.offline import verify_export
from tests.fhir.conftest import FhirClient, bp_item, moment, store_readings

pytestmark = pytest.mark.django_db

RESTFUL = "http://hl7.org/fhir/restful-interaction"


@pytest.fixture
def exported(tmp_path, clinician_a, patient_a):
    store_readings(patient_a, [bp_item("a-1", moment())])
    client = FhirClient(clinician_a)
    client.get(f"/fhir/Observation?patient={patient_a.pk}&code=85354-9")
    client.get("/fhir/Observation?date=bad")
    out = tmp_path / "export"
    call_command("audit_export", "--out", str(out), "--format", "jsonl,fhir")
    return out


def test_the_fhir_file_renders_each_line_and_the_chain_verifies(exported):
    assert verify_export(exported).events >= 4
    lines = [json.loads(line) for line in (exported / "events.jsonl").read_text().splitlines()]
    bundle = Bundle.model_validate_json((exported / "auditevents.fhir.json").read_text())
    resources = [entry.resource.model_dump(mode="json") for entry in bundle.entry]
    assert len(resources) == len(lines)
    for line, resource in zip(lines, resources, strict=True):
        stored = line.pop("hash")
        assert entry_hash(canonical_text(line)) == stored  # the entry, not the rendering
        [journal] = [e for e in resource["entity"] if e["type"]["code"] == "AuditEvent"]
        details = {d["type"]: d["valueString"] for d in journal["detail"]}
        assert (details["sequence"], details["hash"]) == (str(line["sequence"]), stored)
        assert resource["id"] == f"audit-{line['sequence']}"


def test_the_exported_search_meets_the_balp_query_profile(exported, patient_a):
    bundle = json.loads((exported / "auditevents.fhir.json").read_text())
    resources = [entry["resource"] for entry in bundle["entry"]]
    searches = [
        r
        for r in resources
        if [s["code"] for s in r["subtype"] if s["system"] == RESTFUL] == ["search-type"]
    ]
    found, refused = searches
    # BALP Query / PatientQuery: required elements, one by one.
    assert found["type"]["code"] == "rest" and found["action"] == "E"
    assert found["outcome"] == "0" and found["recorded"]
    assert found["meta"]["profile"][0].endswith("IHE.BasicAudit.PatientQuery")
    types = [{c["code"] for c in a["type"]["coding"]} for a in found["agent"]]
    assert {"110153"} in types and {"110152"} in types  # client, server
    for agent in found["agent"]:
        assert agent["who"]
        if {"110152", "110153"} & {c["code"] for c in agent["type"]["coding"]}:
            assert agent["network"]["address"]
    [user] = [a for a in found["agent"] if a["requestor"]]
    assert {"IRCP", "humanuser"} <= {c["code"] for c in user["type"]["coding"]}
    [query] = [e for e in found["entity"] if e.get("role", {}).get("code") == "24"]
    assert base64.b64decode(query["query"]).decode().startswith("Observation?patient=")
    [patient] = [e for e in found["entity"] if e.get("role", {}).get("code") == "1"]
    assert patient["what"]["reference"] == f"Patient/{patient_a.pk}"
    assert found["source"]["observer"]

    assert refused["outcome"] == "4" and "400" in refused["outcomeDesc"]
    assert "profile" not in refused.get("meta", {})
