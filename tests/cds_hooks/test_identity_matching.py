"""The EHR's own identifier names the patient in a hook (issue 15, identity): an identifier in
the EHR's registered system, set at enrolment or by FHIR update, matches as the clinic's MRN
does — and only for the patients of the teams the EHR serves."""

from __future__ import annotations

import pytest

from patients.models import PatientIdentifier
from tests.cds_hooks.conftest import PATIENT_VIEW, patient_view_request
from tests.factories import PatientFactory

pytestmark = pytest.mark.django_db
EHR_SYSTEM = "urn:example:ehr:mrn"  # the registered system of the committed request's EHR


def _prefetch_value() -> str:
    body = patient_view_request()
    return body["prefetch"]["patient"]["identifier"][0]["value"]


def test_a_patient_known_by_the_ehrs_identifier_is_matched_without_an_mrn(ehr, maren):
    maren.mrn = None
    maren.save(update_fields=["mrn"])
    PatientIdentifier.objects.create(patient=maren, system=EHR_SYSTEM, value=_prefetch_value())

    response = ehr.call(PATIENT_VIEW, patient_view_request())

    assert response.status_code == 200, response.content


def test_the_ehrs_identifier_wins_over_another_patients_mrn(ehr, maren, team_a):
    """The identifier in the EHR's own system is the exact match; a clinic MRN that happens to
    carry the same text belongs to someone else."""
    value = _prefetch_value()
    maren.mrn = "CLINIC-7"
    maren.save(update_fields=["mrn"])
    PatientIdentifier.objects.create(patient=maren, system=EHR_SYSTEM, value=value)
    PatientFactory(care_team=team_a, mrn=value, birth_year=1990, sex="male")

    response = ehr.call(PATIENT_VIEW, patient_view_request())

    assert response.status_code == 200, response.content  # the demographics agree: Maren


def test_an_identifier_in_another_system_does_not_match(ehr, maren):
    maren.mrn = None
    maren.save(update_fields=["mrn"])
    PatientIdentifier.objects.create(
        patient=maren, system="https://other.example/mrn", value=_prefetch_value()
    )

    response = ehr.call(PATIENT_VIEW, patient_view_request())

    assert response.status_code == 404


def test_an_identifier_of_a_patient_outside_the_ehrs_teams_is_404(ehr, maren, team_b):
    maren.mrn = None
    maren.save(update_fields=["mrn"])
    PatientIdentifier.objects.create(patient=maren, system=EHR_SYSTEM, value=_prefetch_value())
    maren.assignments.all().delete()
    maren.assignments.create(care_team=team_b)

    response = ehr.call(PATIENT_VIEW, patient_view_request())

    assert response.status_code == 404
