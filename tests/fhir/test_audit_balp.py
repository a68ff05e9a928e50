"""Every FHIR interaction is one journal event (IHE BALP), and the AuditEvent rendering follows
the Basic Audit Log Patterns: restful-interaction and DICOM codes, typed agents, the query of a
search, the patient and the resource read, the chain position as details."""

from __future__ import annotations

import base64

import pytest
from fhir.resources.R4B.auditevent import AuditEvent as FhirAuditEvent
from rest_framework.test import APIClient

from audit.models import AuditEvent
from tests.fhir.conftest import FhirClient, bp_item, moment, store_readings
from tests.fhir.test_identity import _service_token
from tests.oauth_clients import backend_service

pytestmark = pytest.mark.django_db

RESTFUL = "http://hl7.org/fhir/restful-interaction"
PRIVATE = "urn:clinaiops:audit-action"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."


@pytest.fixture
def reading_a(patient_a):
    store_readings(patient_a, [bp_item("a-1", moment())])
    return patient_a.readings.get()


def appended_by(request) -> list[AuditEvent]:
    """The journal events one request appended."""
    before = AuditEvent.objects.order_by("-sequence").values_list("sequence", flat=True).first()
    request()
    return list(AuditEvent.objects.filter(sequence__gt=before or 0).order_by("sequence"))


def rendered(auditor, event: AuditEvent) -> dict:
    body = FhirClient(auditor).get(f"/fhir/AuditEvent/audit-{event.sequence}").json()
    FhirAuditEvent.model_validate(body)  # a validator we did not write
    return body


def codes(concepts, system: str) -> list[str]:
    return [c["code"] for c in concepts if c.get("system") == system]


def agent_typed(resource: dict, code: str) -> list[dict]:
    return [a for a in resource["agent"] if code in {c["code"] for c in a["type"]["coding"]}]


def entity_roled(resource: dict, role: str) -> list[dict]:
    return [e for e in resource["entity"] if e.get("role", {}).get("code") == role]


# --- journalling ---------------------------------------------------------------------------------


def test_an_empty_search_is_one_event_with_the_query_as_sent_and_as_applied(clinician_a):
    client = FhirClient(clinician_a)
    query = "code=8867-4&bogus=1&date=ge2026-01-01"  # bogus: dropped (lenient), still journalled
    [event] = appended_by(lambda: client.get(f"/fhir/Observation?{query}"))
    assert (event.action, event.object_type, event.patient_ids) == ("read", "reading", [])
    detail = event.detail
    assert detail["interaction"] == "search-type" and detail["resource"] == "Observation"
    assert detail["query"] == query
    assert detail["applied"] == "code=8867-4&date=ge2026-01-01"
    assert detail["total"] == 0


def test_a_patients_own_reads_and_searches_are_each_one_event(patient_a, reading_a):
    client = FhirClient(patient_a.user)
    read = appended_by(lambda: client.get(f"/fhir/Observation/{reading_a.pk}"))
    search = appended_by(lambda: client.get("/fhir/Observation?code=85354-9"))
    assert [(e.actor_id, e.patient_ids, e.detail["interaction"]) for e in read + search] == [
        (patient_a.user.pk, [patient_a.pk], "read"),
        (patient_a.user.pk, [patient_a.pk], "search-type"),
    ]
    assert read[0].detail["id"] == str(reading_a.pk)


def test_a_vread_names_the_version_and_a_missing_version_writes_nothing(clinician_a, reading_a):
    client = FhirClient(clinician_a)
    version = client.get(f"/fhir/Observation/{reading_a.pk}").json()["meta"]["versionId"]
    [event] = appended_by(
        lambda: client.get(f"/fhir/Observation/{reading_a.pk}/_history/{version}")
    )
    assert (event.detail["interaction"], event.detail["version"]) == ("vread", version)
    assert appended_by(lambda: client.get(f"/fhir/Observation/{reading_a.pk}/_history/x1")) == []


def test_an_ehr_back_end_services_reads_are_journalled(team_a, patient_a, reading_a):
    """A service is no person, but what it reads is disclosed to the EHR: journalled."""
    registration, key = backend_service([team_a])
    client = FhirClient()
    token = _service_token(APIClient(), registration, key, "system/Observation.rs")
    client.client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    [event] = appended_by(lambda: client.get(f"/fhir/Observation?patient={patient_a.pk}"))
    assert (event.actor_id, event.patient_ids) == (registration.service_user_id, [patient_a.pk])
    assert event.detail["client"] == registration.application.client_id


def test_a_refused_search_is_one_refused_event(clinician_a):
    client = FhirClient(clinician_a)
    [event] = appended_by(lambda: client.get("/fhir/Observation?date=bad"))
    assert (event.action, event.outcome) == ("refused", "denied")


# --- the rendering -------------------------------------------------------------------------------


def test_a_search_renders_as_balp_patient_query(auditor, clinician_a, patient_a, reading_a):
    query = f"patient=Patient/{patient_a.pk}&code=85354-9&_count=5"
    client = FhirClient(clinician_a)
    [event] = appended_by(lambda: client.get(f"/fhir/Observation?{query}"))
    resource = rendered(auditor, event)

    assert resource["meta"]["profile"] == [f"{BALP}PatientQuery"]
    assert resource["type"]["system"] == "http://terminology.hl7.org/CodeSystem/audit-event-type"
    assert resource["type"]["code"] == "rest"
    assert codes(resource["subtype"], RESTFUL) == ["search-type"]
    assert codes(resource["subtype"], PRIVATE) == ["read"]
    assert (resource["action"], resource["outcome"]) == ("E", "0")
    assert resource["recorded"].startswith(event.occurred_at.strftime("%Y-%m-%dT%H:%M:%S"))

    [user] = [a for a in resource["agent"] if a["requestor"]]
    assert {c["code"] for c in user["type"]["coding"]} == {"IRCP", "humanuser"}
    assert user["who"]["reference"] == f"Practitioner/{clinician_a.pk}"
    assert user["who"]["identifier"] == {
        "system": "urn:clinaiops:user",
        "value": str(clinician_a.pk),
    }
    assert "network" not in user  # BALP: users are not network devices
    [client] = agent_typed(resource, "110153")  # Source Role ID: the query flows to the server
    [server] = agent_typed(resource, "110152")
    assert client["network"] == {"address": "127.0.0.1", "type": "2"}
    assert client["who"]["identifier"]["value"] == "clinaiops-app"
    assert server["network"] == {"address": "http://testserver/fhir", "type": "5"}
    assert resource["source"]["observer"]["display"] == "ClinAIOps"

    [patient] = entity_roled(resource, "1")
    assert patient["what"] == {"reference": f"Patient/{patient_a.pk}"}
    assert patient["type"]["code"] == "1"
    [asked] = entity_roled(resource, "24")
    assert asked["type"]["code"] == "2" and "what" not in asked and "detail" not in asked
    assert base64.b64decode(asked["query"]).decode() == f"Observation?{query}"
    # As applied: _count is paging, not a criterion.
    assert asked["description"] == f"Observation?patient=Patient/{patient_a.pk}&code=85354-9"
    [journal] = [e for e in resource["entity"] if e["type"]["code"] == "AuditEvent"]
    details = {d["type"]: d["valueString"] for d in journal["detail"]}
    assert (details["sequence"], details["hash"], details["prev_hash"]) == (
        str(event.sequence),
        event.hash,
        event.prev_hash,
    )
    [request_id] = [e for e in resource["entity"] if e["type"]["code"] == "XrequestId"]
    assert request_id["what"]["identifier"]["value"] == event.payload["request_id"]


def test_a_patients_read_renders_as_balp_patient_read(auditor, patient_a, reading_a):
    client = FhirClient(patient_a.user)
    [event] = appended_by(lambda: client.get(f"/fhir/Observation/{reading_a.pk}"))
    resource = rendered(auditor, event)
    assert resource["meta"]["profile"] == [f"{BALP}PatientRead"]
    assert codes(resource["subtype"], RESTFUL) == ["read"]
    assert resource["action"] == "R"
    [user] = [a for a in resource["agent"] if a["requestor"]]
    assert user["who"]["reference"] == f"Patient/{patient_a.pk}"
    # BALP Read: the data flows to the client, so the client is the Destination.
    assert agent_typed(resource, "110152")[0]["network"]["type"] == "2"
    assert agent_typed(resource, "110153")[0]["who"]["display"] == "ClinAIOps"
    [data] = entity_roled(resource, "4")
    assert data["what"] == {"reference": f"Observation/{reading_a.pk}"}
    assert data["type"]["code"] == "2"


def test_a_refusal_renders_as_a_failed_rest_interaction_with_its_reason(auditor, clinician_a):
    client = FhirClient(clinician_a)
    [event] = appended_by(lambda: client.get("/fhir/Observation?date=bad"))
    resource = rendered(auditor, event)
    assert resource["type"]["code"] == "rest"
    assert codes(resource["subtype"], RESTFUL) == ["search-type"]
    assert codes(resource["subtype"], PRIVATE) == ["refused"]
    assert (resource["action"], resource["outcome"]) == ("E", "4")
    assert "400" in resource["outcomeDesc"] and "http.date" in resource["outcomeDesc"]
    assert "meta" not in resource or "profile" not in resource["meta"]  # no success profile


def test_a_login_renders_as_dicom_user_authentication(auditor, clinician_a):
    FhirClient(clinician_a)  # signs in
    event = AuditEvent.objects.filter(action="login", actor_id=clinician_a.pk).last()
    resource = rendered(auditor, event)
    assert (resource["type"]["system"], resource["type"]["code"]) == (DCM, "110114")
    assert codes(resource["subtype"], DCM) == ["110122"]
    assert codes(resource["subtype"], PRIVATE) == ["login"]
    assert codes(resource["subtype"], RESTFUL) == []


# --- searching the journal -----------------------------------------------------------------------


def test_audit_events_are_found_by_restful_subtype_action_agent_entity_outcome_and_type(
    auditor, clinician_a, patient_a, reading_a
):
    clinician = FhirClient(clinician_a)
    clinician.get(f"/fhir/Observation/{reading_a.pk}")
    clinician.get("/fhir/Observation?code=85354-9")
    clinician.get("/fhir/Observation?date=bad")
    FhirClient(patient_a.user).get(f"/fhir/Patient/{patient_a.pk}")
    client = FhirClient(auditor)

    def found(query: str) -> list[tuple[str, str]]:
        body = client.get(f"/fhir/AuditEvent?{query}&_count=500").json()
        return [
            (codes(e["resource"]["subtype"], RESTFUL)[:1] or [""])[0]
            + "/"
            + codes(e["resource"]["subtype"], PRIVATE)[0]
            for e in body.get("entry", [])
        ]

    by = f"agent=Practitioner/{clinician_a.pk}"  # the auditor's own searches are journalled too
    searches = ["search-type/read", "search-type/refused"]
    assert found(f"subtype={RESTFUL}|search-type&{by}") == searches
    assert found(f"subtype=search-type&{by}") == searches
    assert found(f"subtype={PRIVATE}|refused") == ["search-type/refused"]
    assert found(f"subtype={RESTFUL}|read&agent=Practitioner/{clinician_a.pk}") == ["read/read"]
    # The patient's sign-in and readings are theirs too; their one FHIR read:
    assert found(f"agent=Patient/{patient_a.pk}&action=R") == ["read/read"]
    assert found(f"entity=Observation/{reading_a.pk}") == ["read/read"]
    assert found(f"action=E&type=rest&{by}") == searches
    assert found(f"action=E&{by}") == ["/login", *searches]  # a sign-in is E too
    assert found(f"action=R&agent=Practitioner/{clinician_a.pk}") == ["read/read"]
    assert found(f"outcome=4&agent=Practitioner/{clinician_a.pk}") == ["search-type/refused"]
    assert found(f"type=rest&agent=Practitioner/{clinician_a.pk}") == ["read/read", *searches]
    assert set(found(f"type={DCM}|110114")) == {"/login"}
    created = found("action=C")  # the readings' batch event: a create on a REST surface
    assert created and set(created) == {"create/create"}
    assert client.get("/fhir/AuditEvent?agent=Device/1").status_code == 400
