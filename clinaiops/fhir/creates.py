"""Creates, alone (``POST /fhir/<type>``) or as the entries of a Bundle: Observations through
the ingestion (``clinaiops.fhir.ingest``), MedicationRequest orders through
``clinicians.decisions.order_dose`` (``clinaiops.fhir.orders``). One outcome shape for both, so
the create view and the Bundle answer them alike.

Observations are stored first, then orders in the order of their entries: an order is judged
with the readings and laboratory results posted alongside it, and a second order for the same
drug sees the first. A unit that is all or nothing (a create, a ``transaction``) is judged whole
— every entry, so the answer lists every failing one — and then rolled back whole if any entry
failed: readings, orders and their audit events alike.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

from clinaiops.dependencies import is_dependency_error
from clinaiops.fhir.http import FhirError, Issue
from clinaiops.fhir.ingest import EntryOutcome, store_observations
from clinaiops.fhir.observation_input import ParsedObservation, Subjects, parse_observation
from clinaiops.fhir.observations import to_fhir as observation_to_fhir
from clinaiops.fhir.order_input import ParsedOrder, parse_order
from clinaiops.fhir.orders import place_order
from clinaiops.fhir.resources import Created

logger = logging.getLogger("clinaiops.fhir")

Parsed = ParsedObservation | ParsedOrder
# What each creatable type's posted resource becomes (its parser raises FhirError).
PARSERS: dict[str, Callable[[Any, Any, str], Parsed]] = {
    "Observation": parse_observation,
    "MedicationRequest": parse_order,
}


class _RollBack(Exception):
    def __init__(self, outcomes: list[Created]):
        super().__init__()
        self.outcomes = outcomes


def parse(
    resource_type: str, raw: Any, user, base: str, *, subjects: Subjects | None = None
) -> Parsed:
    """``subjects``: shared by the entries of one Bundle (``parse_observation``)."""
    if resource_type == "Observation":
        return parse_observation(raw, user, base, subjects=subjects)
    return PARSERS[resource_type](raw, user, base)


def _observation(outcome: EntryOutcome) -> Created:
    if outcome.failed or outcome.record is None:
        return Created(outcome.status, issues=outcome.issues)
    return Created(
        outcome.status,
        resource=observation_to_fhir(outcome.record),
        summary="created" if outcome.status == 201 else "already stored (idempotent re-post)",
    )


def _order(user, order: ParsedOrder, *, contain_faults: bool) -> Created:
    if not contain_faults:
        return place_order(user, order)
    try:
        return place_order(user, order)
    except Exception as error:  # fails the entry, never the rest of a batch (already stored)
        if is_dependency_error(error):  # a database that is down: retry the entry, not a bug
            logger.warning("fhir_order_unavailable", extra={"error": type(error).__name__})
            return Created(
                503,
                issues=[
                    Issue(
                        "A service this order needs is temporarily unavailable; the order was "
                        "not placed — post it again",
                        "transient",
                    )
                ],
            )
        logger.exception("fhir_order_failed", extra={"patient_id": order.patient.pk})
        return Created(
            500,
            issues=[
                Issue(
                    "the order could not be processed; it was not placed — search the "
                    "patient's orders before posting it again",
                    "exception",
                )
            ],
        )


# An item to create, why it cannot be, or its answer already (a conditional create's match).
Item = Parsed | FhirError | Created


def _create(user, parsed: list[Item], *, contain_faults: bool) -> list[Created]:
    outcomes: list[Created | None] = [
        Created(item.status, issues=item.issues)
        if isinstance(item, FhirError)
        else item
        if isinstance(item, Created)
        else None
        for item in parsed
    ]
    observations = [
        (index, item) for index, item in enumerate(parsed) if isinstance(item, ParsedObservation)
    ]
    if observations:
        stored = store_observations(user, [item for _, item in observations])
        for (index, _), outcome in zip(observations, stored, strict=True):
            outcomes[index] = _observation(outcome)
    for index, item in enumerate(parsed):
        if isinstance(item, ParsedOrder):
            outcomes[index] = _order(user, item, contain_faults=contain_faults)
    assert all(outcome is not None for outcome in outcomes)
    return outcomes  # type: ignore[return-value]


def create(user, parsed: list[Item], *, all_or_nothing: bool) -> list[Created]:
    """One outcome per item, in order (an item that did not parse is its error). With
    ``all_or_nothing`` either every outcome is a success and everything is stored, or nothing
    is; otherwise each valid item is stored and a server fault fails its own item only."""
    if not all_or_nothing:
        return _create(user, parsed, contain_faults=True)
    try:
        with transaction.atomic():
            outcomes = _create(user, parsed, contain_faults=False)
            if any(outcome.failed for outcome in outcomes):
                raise _RollBack(outcomes)
    except _RollBack as rollback:
        return [
            outcome if outcome.failed else Created(outcome.status, summary="rolled back")
            for outcome in rollback.outcomes
        ]
    return outcomes
