"""A parsed ``MedicationRequest`` order into ``clinicians.decisions.order_dose`` — the same
checks as a clinician's decision: the labelled range, the safety gate and the treatment-course
rules as they stand now — and its outcome in FHIR's terms:

- taken: 201 with the new order (``rx-<id>``) as stored; a stop (0 mg) is 200 with the order it
  stopped (nothing new was created). Inside the minimum interval the order is taken (the
  interval holds the model back, not the clinician) and the answer says so: the header
  ``X-ClinAIOps-Course: inside-min-interval`` on a lone create, an informational issue with
  code ``min_interval`` in a Bundle entry's ``response.outcome``;
- a dose that is not a plain decimal or is outside the drug's labelled range: 400 at
  ``DOSE_VALUE``;
- blocked by the gate or the course rules: 409, one issue per reason with its code in
  ``details`` (``urn:clinaiops:course-reason``). An order carries no override: a clinician
  overrides by deciding a proposal;
- a stop of a drug the patient is not taking: 422 (there is no order to stop).

An order ``basedOn`` a proposal is that proposal's decision instead
(``clinicians.decisions.decide_recommendation_by_order``): approved at the proposed dose,
modified at another, with every rule of a decision re-checked now — the proposal's own block and
the gate's state blocks included, and no override — and journalled once, as the decision. The
answers are the same; a proposal decided meanwhile is 409 at ``basedOn``.
"""

from __future__ import annotations

from django.db import transaction

from clinaiops.fhir.http import Issue
from clinaiops.fhir.medications import order_to_fhir
from clinaiops.fhir.order_input import BASED_ON, DOSE_VALUE, MEDICATION, ROOT, ParsedOrder
from clinaiops.fhir.resources import Created
from clinicians.decisions import decide_recommendation_by_order, order_dose
from clinicians.errors import InvalidTransition, OverrideRequired
from core.errors import DomainError
from patients.models import Prescription

COURSE_REASON_SYSTEM = "urn:clinaiops:course-reason"
COURSE_HEADER = "X-ClinAIOps-Course"
INSIDE_MIN_INTERVAL = "inside-min-interval"
SOURCE = "fhir-order"  # Prescription.source of an order placed through the facade
_FIELD_PATHS = {
    "dose_mg": DOSE_VALUE,
    "medication": MEDICATION,
    "reason": f"{ROOT}.reasonCode",
    "based_on": BASED_ON,
}
_ISSUE_CODES = {403: "forbidden", 404: "not-found", 409: "conflict"}


def _refused(error: DomainError, order: ParsedOrder) -> Created:
    if isinstance(error, InvalidTransition) and order.based_on is not None:
        return Created(409, issues=[Issue(error.message, "conflict", BASED_ON)])
    if isinstance(error, OverrideRequired):
        return Created(
            409,
            issues=[
                Issue(
                    reason["message"],
                    "business-rule",
                    coding=(COURSE_REASON_SYSTEM, reason["code"]),
                )
                for reason in error.reasons
            ],
        )
    return Created(
        error.http_status,
        issues=[
            Issue(
                error.message,
                _ISSUE_CODES.get(error.http_status, "value"),
                _FIELD_PATHS.get(error.field or "", ROOT),
            )
        ],
    )


def _nothing_to_stop(order: ParsedOrder) -> Created:
    return Created(
        422,
        issues=[
            Issue(
                f"the patient is not taking {order.medication}: there is no order to stop",
                "business-rule",
                DOSE_VALUE,
            )
        ],
    )


def place_order(user, order: ParsedOrder) -> Created:
    """Place ``order`` as ``user``; the outcome says what happened (refusals are not raised).
    Nothing of a refused order is stored."""
    try:
        with transaction.atomic():
            # The order a stop closes, locked so that it is the one answered.
            open_order = (
                Prescription.objects.select_for_update()
                .filter(patient=order.patient, medication=order.medication, ended_at__isnull=True)
                .first()
            )
            if order.dose_mg == 0 and open_order is None:
                return _nothing_to_stop(order)
            if order.based_on is not None:
                result = decide_recommendation_by_order(
                    recommendation=order.based_on,
                    actor=user,
                    dose_mg=order.dose_mg,
                    reason=order.reason,
                    channel=SOURCE,
                )
            else:
                result = order_dose(
                    patient=order.patient,
                    medication=order.medication,
                    dose_mg=order.dose_mg,
                    actor=user,
                    reason=order.reason,
                    source=SOURCE,
                )
    except DomainError as error:
        return _refused(error, order)
    prescription = result["prescription"]
    if prescription is None:
        assert open_order is not None
        open_order.refresh_from_db()
        outcome = Created(200, resource=order_to_fhir(open_order), summary="stopped")
    else:
        outcome = Created(201, resource=order_to_fhir(prescription))
    if result["inside_min_interval"]:
        outcome.headers[COURSE_HEADER] = INSIDE_MIN_INTERVAL
        outcome.issues = [
            Issue(
                f"Taken inside the minimum interval between dose changes: {hold['message']}",
                "informational",
                severity="information",
                coding=(COURSE_REASON_SYSTEM, hold["code"]),
            )
            for hold in result["inside_min_interval"]
        ]
    return outcome
