"""Conditional create (FHIR R4 http.html#ccreate): ``If-None-Exist: <search>`` on a create,
``request.ifNoneExist`` on a Bundle entry. The criteria are a search of the type, run as the
caller: no match creates; one match answers 200 with it and creates nothing; more than one is
412. The criteria are always parsed strictly — an unknown parameter dropped would widen the
match and answer with the wrong resource instead of creating.

Not atomic across requests: two conditional creates racing may both see no match. Readings
and laboratory results are de-duplicated by their identifier anyway; orders are not."""

from __future__ import annotations

from django.http import QueryDict

from clinaiops.fhir.http import FhirError, Issue
from clinaiops.fhir.resources import Created
from clinaiops.fhir.search import parse_query
from core import authz


def existing(user, resource_type: str, criteria: str) -> Created | None:
    """The answer when ``criteria`` match (200 with the resource, or 412), None when nothing
    matches. Raises FhirError (400) for criteria that are not a search of the type."""
    from clinaiops.fhir.registry import HANDLERS  # the registry imports the creates

    handler = HANDLERS[resource_type]
    pairs = list(QueryDict(criteria.lstrip("?")).lists())
    if not pairs or handler.search is None:
        raise FhirError.one(400, "If-None-Exist must be search parameters, e.g. identifier=…")
    search = parse_query(pairs, handler.spec, strict=True)
    search.count, search.offset, search.summary, search.elements = 2, 0, None, None
    found = handler.search(user, search)
    if found.total == 0:
        return None
    if found.total > 1:
        return Created(
            412,
            issues=[
                Issue(
                    f"If-None-Exist {criteria!r} matches {found.total} {resource_type} "
                    "resources; nothing was created (make the criteria select one)",
                    "duplicate",
                )
            ],
        )
    authz.authorize_read(
        user,
        handler.read_action,
        shown=found.patient_ids,
        detail={"channel": "fhir", "interaction": "create", "resource": resource_type},
    )
    return Created(
        200, resource=found.resources[0], summary="already exists (If-None-Exist matched)"
    )
