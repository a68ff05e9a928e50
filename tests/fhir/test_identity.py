"""EHR identifiers on Patient (issue 15, identity): served in ``Patient.identifier`` (the MRN
typed ``MR``), found by ``Patient?identifier=`` under FHIR's token rules, and set by FHIR update
of the identifier only — by the care team, an administrator or the EHR's back-end service, with
``If-Match`` honoured, every refusal at its element, and the change journalled."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from jwcrypto import jwt

from audit.models import AuditEvent
from patients.emergency import open_emergency_access
from patients.models import PatientIdentifier
from tests.factories import ClinicianFactory, PatientFactory
from tests.fhir.conftest import FHIR_JSON, FhirClient, assert_valid
from tests.oauth_clients import backend_service

pytestmark = pytest.mark.django_db
EPIC = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14"
OTHER_EHR = "https://ehr.example.org/fhir/sid/mrn"
MRN_SYSTEM = "urn:clinaiops:mrn"  # settings.FHIR_MRN_SYSTEM in tests
MR = "http://terminology.hl7.org/CodeSystem/v2-0203"


@pytest.fixture
def patient(team_a):
    row = PatientFactory(care_team=team_a)
    row.mrn = "MRN-0042"
    row.save(update_fields=["mrn"])
    return row


def put(client: FhirClient, resource: dict, **headers):
    return client._check(
        client.client.put(
            f"/fhir/Patient/{resource['id']}",
            data=json.dumps(resource),
            content_type=FHIR_JSON,
            HTTP_ACCEPT=FHIR_JSON,
            **headers,
        )
    )


def read(client: FhirClient, patient) -> dict:
    response = client.get(f"/fhir/Patient/{patient.pk}")
    assert response.status_code == 200, response.content
    return response.json()


def with_identifiers(resource: dict, *extra: dict) -> dict:
    own = [i for i in resource["identifier"] if i["system"].startswith("urn:clinaiops:")]
    return resource | {"identifier": own + list(extra)}


def issue_of(response) -> dict:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return body["issue"][0]


# --- served and searched -------------------------------------------------------------------------


def test_patient_serves_our_id_the_mrn_typed_mr_and_the_ehr_identifiers(clinician_a, patient):
    PatientIdentifier.objects.create(patient=patient, system=EPIC, value="E1")

    resource = read(FhirClient(clinician_a), patient)

    ours, mrn, ehr = resource["identifier"]
    assert ours == {"system": "urn:clinaiops:patient", "value": str(patient.pk)}
    assert mrn["system"] == MRN_SYSTEM and mrn["value"] == "MRN-0042"
    assert mrn["type"]["coding"][0]["system"] == MR and mrn["type"]["coding"][0]["code"] == "MR"
    assert ehr == {"system": EPIC, "value": "E1"}


@pytest.mark.parametrize(
    ("query", "found"),
    [
        (f"{EPIC}|E1", True),
        ("E1", True),  # a value alone: any system
        (f"{OTHER_EHR}|E1", False),  # another system
        ("|E1", False),  # no system: this server serves none without one
        (f"{EPIC}|", True),  # any value in the system
        (f"{MRN_SYSTEM}|MRN-0042", True),
        ("MRN-0042", True),
        (f"{EPIC}|MRN-0042", False),
    ],
)
def test_identifier_search_follows_the_token_rules(clinician_a, patient, team_a, query, found):
    PatientIdentifier.objects.create(patient=patient, system=EPIC, value="E1")
    bystander = PatientFactory(care_team=team_a)
    PatientIdentifier.objects.create(patient=bystander, system=OTHER_EHR, value="E2")

    response = FhirClient(clinician_a).get(f"/fhir/Patient?identifier={query}")

    ids = [entry["resource"]["id"] for entry in response.json().get("entry", [])]
    assert ids == ([str(patient.pk)] if found else [])


def test_identifier_search_never_reaches_another_teams_patient(clinician_b, patient):
    PatientIdentifier.objects.create(patient=patient, system=EPIC, value="E1")

    response = FhirClient(clinician_b).get(f"/fhir/Patient?identifier={EPIC}|E1")

    assert response.json()["total"] == 0


# --- update -------------------------------------------------------------------------------------


def test_the_care_team_sets_changes_and_removes_ehr_identifiers_each_journalled(
    clinician_a, patient
):
    client = FhirClient(clinician_a)
    served = read(client, patient)

    added = put(client, with_identifiers(served, {"system": EPIC, "value": "E1"}))

    assert added.status_code == 200, added.content
    assert added.json()["identifier"][-1] == {"system": EPIC, "value": "E1"}
    assert added["ETag"] == f'W/"{added.json()["meta"]["versionId"]}"'
    assert added.json()["meta"]["versionId"] != served["meta"]["versionId"]
    assert read(client, patient) == added.json()
    changed = put(client, with_identifiers(added.json(), {"system": EPIC, "value": "E2"}))
    removed = put(client, with_identifiers(changed.json()))
    assert removed.status_code == 200
    assert not PatientIdentifier.objects.filter(patient=patient).exists()
    events = AuditEvent.objects.filter(
        action="update", object_type="patient", patient_id=patient.pk
    ).order_by("sequence")
    assert [e.changes["identifiers"] for e in events] == [
        {"old": [], "new": [{"system": EPIC, "value": "E1"}]},
        {"old": [{"system": EPIC, "value": "E1"}], "new": [{"system": EPIC, "value": "E2"}]},
        {"old": [{"system": EPIC, "value": "E2"}], "new": []},
    ]
    assert all(e.actor_id == clinician_a.pk for e in events)


def test_an_update_that_changes_nothing_writes_nothing(clinician_a, patient):
    client = FhirClient(clinician_a)
    served = read(client, patient)

    again = put(client, served)

    assert again.status_code == 200
    assert again.json()["meta"] == served["meta"]
    assert not AuditEvent.objects.filter(action="update", patient_id=patient.pk).exists()


@pytest.mark.parametrize(
    ("change", "element"),
    [
        (lambda r: r | {"gender": "male"}, "Patient.gender"),
        (lambda r: r | {"birthDate": "1901"}, "Patient.birthDate"),
        (
            lambda r: r | {"name": [r["name"][0] | {"family": "Other"}]},
            "Patient.name[0].family",
        ),
        (lambda r: r | {"telecom": [{"system": "phone", "value": "1"}]}, "Patient.telecom"),
        (lambda r: {k: v for k, v in r.items() if k != "extension"}, "Patient.extension"),
    ],
)
def test_any_other_element_changed_is_422_naming_it_and_nothing_is_stored(
    clinician_a, patient, change, element
):
    client = FhirClient(clinician_a)
    served = read(client, patient)

    refused = put(client, change(with_identifiers(served, {"system": EPIC, "value": "E1"})))

    assert refused.status_code == 422
    assert issue_of(refused)["expression"] == [element]
    assert "only Patient.identifier" in issue_of(refused)["diagnostics"]
    assert not PatientIdentifier.objects.exists()
    journalled = AuditEvent.objects.filter(action="refused", actor_id=clinician_a.pk).get()
    assert journalled.detail["field"] == element


def test_the_mrn_cannot_be_changed_or_removed_by_update_and_says_why(clinician_a, patient):
    client = FhirClient(clinician_a)
    served = read(client, patient)
    ours, mrn = served["identifier"]

    changed = put(client, served | {"identifier": [ours, mrn | {"value": "MRN-9"}]})
    dropped = put(client, served | {"identifier": [ours]})
    retyped = put(client, served | {"identifier": [ours, mrn | {"type": {"text": "x"}}]})

    for refused, where in (
        (changed, "Patient.identifier[1].value"),
        (dropped, "Patient.identifier"),
        (retyped, "Patient.identifier[1].type"),
    ):
        assert refused.status_code == 422
        assert issue_of(refused)["expression"] == [where]
        assert "matched by it" in issue_of(refused)["diagnostics"]
    patient.refresh_from_db()
    assert patient.mrn == "MRN-0042"


def test_an_mrn_is_not_added_by_update_either(clinician_a, team_a):
    without_mrn = PatientFactory(care_team=team_a)
    client = FhirClient(clinician_a)
    served = read(client, without_mrn)

    refused = put(client, with_identifiers(served, {"system": MRN_SYSTEM, "value": "NEW"}))

    assert refused.status_code == 422
    assert issue_of(refused)["expression"] == ["Patient.identifier[1].system"]


def test_our_own_identifier_is_kept(clinician_a, patient):
    client = FhirClient(clinician_a)
    served = read(client, patient)

    refused = put(client, served | {"identifier": served["identifier"][1:]})

    assert refused.status_code == 422
    assert "logical id" in issue_of(refused)["diagnostics"]


@pytest.mark.parametrize(
    ("identifier", "element", "words"),
    [
        ({"system": "ehr-mrn", "value": "1"}, "Patient.identifier[2].system", "absolute URI"),
        ({"value": "1"}, "Patient.identifier[2].system", "system is required"),
        ({"system": EPIC, "value": ""}, "Patient.identifier[2].value", "value is required"),
        ({"system": EPIC, "value": "9" * 129}, "Patient.identifier[2].value", "at most 128"),
        ({"system": EPIC, "value": 12}, "Patient.identifier[2].value", "value is required"),
        (
            {"system": EPIC, "value": "1", "use": "official"},
            "Patient.identifier[2].use",
            "cannot be kept",
        ),
        (
            {"system": "urn:clinaiops:other", "value": "1"},
            "Patient.identifier[2].system",
            "this server's own",
        ),
    ],
)
def test_a_bad_identifier_is_400_at_its_element(clinician_a, patient, identifier, element, words):
    client = FhirClient(clinician_a)

    refused = put(client, with_identifiers(read(client, patient), identifier))

    assert refused.status_code == 400
    assert issue_of(refused)["expression"] == [element]
    assert words in issue_of(refused)["diagnostics"]
    assert not PatientIdentifier.objects.exists()


def test_two_identifiers_in_one_system_are_400_at_the_second(clinician_a, patient):
    client = FhirClient(clinician_a)
    body = with_identifiers(
        read(client, patient), {"system": EPIC, "value": "1"}, {"system": EPIC, "value": "2"}
    )

    refused = put(client, body)

    assert refused.status_code == 400
    assert issue_of(refused)["expression"] == ["Patient.identifier[3].system"]


def test_an_identifier_naming_another_patient_is_409_and_not_journalled_as_a_change(
    clinician_a, patient, patient_b
):
    PatientIdentifier.objects.create(patient=patient_b, system=EPIC, value="E1")
    client = FhirClient(clinician_a)

    conflict = put(client, with_identifiers(read(client, patient), {"system": EPIC, "value": "E1"}))

    assert conflict.status_code == 409
    assert issue_of(conflict)["code"] == "duplicate"
    assert issue_of(conflict)["expression"] == ["Patient.identifier[2]"]
    assert f"Patient/{patient_b.pk}" not in json.dumps(conflict.json())
    assert not PatientIdentifier.objects.filter(patient=patient).exists()
    assert not AuditEvent.objects.filter(action="update", patient_id=patient.pk).exists()


def test_if_match_with_an_old_version_is_412_and_the_current_one_applies(clinician_a, patient):
    client = FhirClient(clinician_a)
    served = read(client, patient)
    first = put(client, with_identifiers(served, {"system": EPIC, "value": "E1"}))
    stale_tag = f'W/"{served["meta"]["versionId"]}"'

    stale = put(
        client,
        with_identifiers(first.json(), {"system": EPIC, "value": "E2"}),
        HTTP_IF_MATCH=stale_tag,
    )
    current = put(
        client,
        with_identifiers(first.json(), {"system": EPIC, "value": "E2"}),
        HTTP_IF_MATCH=first["ETag"],
    )

    assert stale.status_code == 412
    assert issue_of(stale)["code"] == "conflict"
    assert current.status_code == 200
    assert PatientIdentifier.objects.get(patient=patient).value == "E2"


def test_the_body_must_name_the_patient_of_the_url(clinician_a, patient):
    client = FhirClient(clinician_a)
    served = read(client, patient)

    wrong_id = put(client, served | {"id": "999999"})
    wrong_id_url = client._check(
        client.client.put(
            f"/fhir/Patient/{patient.pk}",
            data=json.dumps(served | {"id": "999999"}),
            content_type=FHIR_JSON,
        )
    )
    not_patient = client._check(
        client.client.put(
            f"/fhir/Patient/{patient.pk}",
            data=json.dumps({"resourceType": "Observation", "id": str(patient.pk)}),
            content_type=FHIR_JSON,
        )
    )

    assert wrong_id.status_code == 404  # /fhir/Patient/999999: no such patient
    assert wrong_id_url.status_code == 400
    assert issue_of(wrong_id_url)["expression"] == ["Patient.id"]
    assert not_patient.status_code == 400


# --- who may update ----------------------------------------------------------------------------


def _attempt(user, patient):
    client = FhirClient(user)
    served = read(FhirClient(ClinicianFactory(care_team=patient.care_teams.first())), patient)
    return put(client, with_identifiers(served, {"system": EPIC, "value": "E1"}))


def test_an_administrator_may_set_identifiers(admin_user, patient):
    response = _attempt(admin_user, patient)

    assert response.status_code == 200, response.content
    assert PatientIdentifier.objects.get(patient=patient).assigned_by == admin_user


def test_another_team_gets_404_the_patient_and_an_auditor_too(clinician_b, auditor, patient):
    assert _attempt(clinician_b, patient).status_code == 404
    assert _attempt(auditor, patient).status_code == 404
    assert not PatientIdentifier.objects.exists()


def test_the_patient_and_emergency_access_may_read_but_not_update(clinician_b, patient):
    open_emergency_access(
        actor=clinician_b, mrn=patient.mrn, reason="Seen in the emergency department", minutes=60
    )
    assert FhirClient(clinician_b).get(f"/fhir/Patient/{patient.pk}").status_code == 200

    by_emergency = _attempt(clinician_b, patient)
    by_patient = _attempt(patient.user, patient)

    assert by_emergency.status_code == 403 and by_patient.status_code == 403
    assert issue_of(by_emergency)["code"] == "forbidden"
    assert not PatientIdentifier.objects.exists()


def test_update_of_another_type_is_405_with_allow(clinician_a, patient):
    response = FhirClient(clinician_a).client.put(
        "/fhir/Observation/1", data="{}", content_type=FHIR_JSON
    )

    assert response.status_code == 405
    assert "PUT" not in response["Allow"]


def _service_token(client, registration, key, scope: str) -> str:
    configuration = client.get("/.well-known/smart-configuration").json()
    token_url = configuration["token_endpoint"]
    now = int(time.time())
    assertion = jwt.JWT(
        header={"alg": "RS384", "kid": key.kid, "typ": "JWT"},
        claims={
            "iss": registration.application.client_id,
            "sub": registration.application.client_id,
            "aud": token_url,
            "exp": now + 240,
            "jti": str(uuid.uuid4()),
        },
    )
    assertion.make_signed_token(key)
    answer = client.post(
        token_url,
        {
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion.serialize(),
        },
    )
    assert answer.status_code == 200, answer.content
    return answer.json()["access_token"]


@pytest.mark.parametrize("write_scope", ["system/Patient.rus", "system/Patient.write"])
def test_the_ehrs_back_end_service_updates_with_a_write_scope(
    team_a, patient, patient_b, write_scope
):
    from rest_framework.test import APIClient

    registration, key = backend_service(
        [team_a], scopes="system/Patient.rus system/Patient.read system/Patient.write"
    )
    reader = FhirClient()
    reader.client.credentials(
        HTTP_AUTHORIZATION="Bearer "
        + _service_token(APIClient(), registration, key, "system/Patient.rs")
    )
    writer = FhirClient()
    writer.client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {_service_token(APIClient(), registration, key, write_scope)}"
    )
    served = read(reader, patient)
    body = with_identifiers(served, {"system": EPIC, "value": "E1"})

    read_only = put(reader, body)
    written = put(writer, body)
    elsewhere = put(writer, with_identifiers(read(FhirClient(patient_b.user), patient_b)))

    assert read_only.status_code == 403
    assert "insufficient_scope" in issue_of(read_only)["diagnostics"]
    assert written.status_code == 200, written.content
    assert assert_valid(written.json())["identifier"][-1]["value"] == "E1"
    assert elsewhere.status_code == 404  # another team's patient: not served
    event = AuditEvent.objects.get(action="update", patient_id=patient.pk)
    assert event.actor_id == registration.service_user_id
