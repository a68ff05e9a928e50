"""EHR identifiers entered at enrolment (issue 15, identity): the admin's form and the CSV take
them, check them as every door does (a system URI, a value of 1–128 characters, one per system,
none naming another patient) with the refusal beside its field, and journal them as part of
the record's creation."""

from __future__ import annotations

import pytest

from audit.models import AuditEvent
from clinicians import enrolment
from patients.models import Patient, PatientIdentifier
from tests.clinicians.test_admin_workspace import _enrol_form
from tests.clinicians.test_portal import portal_client

pytestmark = pytest.mark.django_db
EPIC = "urn:oid:1.2.840.114350.1.13.0.1.7.5.737384.14"
ENROL = "/portal/admin/patients/enrol/"


@pytest.fixture
def admin(admin_user):
    return portal_client(admin_user)


def test_the_form_enrols_with_the_ehrs_identifier_and_journals_it(admin, team_a, admin_user):
    done = admin.post(
        ENROL, _enrol_form(team_a, identifier_system=EPIC, identifier_value=" 000123 ")
    )

    patient = Patient.objects.get(mrn="E-55012")
    assert done.status_code == 302
    row = PatientIdentifier.objects.get(patient=patient)
    assert (row.system, row.value, row.assigned_by) == (EPIC, "000123", admin_user)
    event = AuditEvent.objects.get(object_type="patient", action="update", patient_id=patient.pk)
    assert event.changes["identifiers"] == {
        "old": [],
        "new": [{"system": EPIC, "value": "000123"}],
    }


@pytest.mark.parametrize(
    ("system", "value", "field", "message"),
    [
        ("ehr-mrn", "1", "identifier_system", b"absolute URI"),
        ("urn:oid:1.2.x", "1", "identifier_system", b"absolute URI"),
        ("urn:uuid:not-a-uuid", "1", "identifier_system", b"absolute URI"),
        ("urn:clinaiops:mrn", "1", "identifier_system", b"MRN"),
        (EPIC, "", "identifier_value", b"value is required"),
        (EPIC, "9" * 129, "identifier_value", b"at most 128"),
        ("", "000123", "identifier_system", b"system is required"),
    ],
)
def test_a_bad_identifier_is_refused_beside_its_field_and_nothing_is_enrolled(
    admin, team_a, system, value, field, message
):
    refused = admin.post(
        ENROL, _enrol_form(team_a, identifier_system=system, identifier_value=value)
    )

    assert refused.status_code == 400
    assert message in refused.content
    assert refused.context["form"].errors[field]
    assert not Patient.objects.exists()


def test_an_identifier_that_names_another_patient_is_refused_and_journalled(
    admin, team_a, patient_b
):
    PatientIdentifier.objects.create(patient=patient_b, system=EPIC, value="000123")

    refused = admin.post(
        ENROL, _enrol_form(team_a, identifier_system=EPIC, identifier_value="000123")
    )

    assert refused.status_code == 400
    assert b"already names another patient" in refused.content
    assert refused.context["form"].errors["identifier_value"]
    assert not Patient.objects.filter(mrn="E-55012").exists()
    journalled = AuditEvent.objects.filter(action="refused").order_by("-sequence").first()
    assert journalled.detail["attempted"] == "enrol_patient"
    assert journalled.detail["field"] == "identifiers"
    assert "000123" not in journalled.entry  # the refused value is not kept in the journal


def _csv(*rows: str) -> bytes:
    header = "mrn,given_name,family_name,birth_date,sex,care_team,time_zone,identifiers"
    return ("\n".join([header, *rows]) + "\n").encode()


def test_the_csv_takes_identifiers_and_reports_a_bad_one_on_its_row(admin_user, team_a):
    other = "https://ehr.example.org/fhir/sid/mrn"
    report = enrolment.import_enrolment_csv(
        _csv(
            f"C-1,Ana,Lima,1950-01-02,female,Team A,UTC,{EPIC}|A1;{other}|X-1",
            "C-2,Ben,Okoro,1951-02-03,male,Team A,UTC,not-a-uri|B1",
            f"C-3,Cy,Dahl,1952-03-04,male,Team A,UTC,{EPIC}|A1",
            f"C-4,Di,Park,1953-04-05,female,Team A,UTC,{EPIC}|D1;{EPIC}|D2",
            "C-5,Ed,Ruiz,1954-05-06,male,Team A,UTC,",
        ),
        actor=admin_user,
    )

    rows = {row.mrn: row for row in report.rows}
    assert rows["C-1"].enrolled and rows["C-5"].enrolled
    first = Patient.objects.get(mrn="C-1")
    assert sorted(first.identifiers.values_list("system", "value")) == [
        (other, "X-1"),
        (EPIC, "A1"),
    ]
    for mrn, words in (
        ("C-2", "absolute URI"),
        ("C-3", "already names another patient"),
        ("C-4", "one value per system"),
    ):
        assert not rows[mrn].enrolled
        [problem] = rows[mrn].problems
        assert problem["field"] == "identifiers" and words in problem["message"], problem
    assert not Patient.objects.filter(mrn__in=["C-2", "C-3", "C-4"]).exists()
