"""``POST /fhir/`` with a ``transaction`` or ``batch`` Bundle of creates.

Only ``POST Observation`` and ``POST MedicationRequest`` (orders) entries are processed: the
creates the facade offers, each judged as the lone create is (``clinaiops.fhir.creates``). A
transaction answers a ``transaction-response`` Bundle, or a single OperationOutcome listing
every failing entry (``Bundle.entry[i]...``) with the status of the first failing entry, and
stores nothing. A batch answers a ``batch-response`` with one status per entry.
"""

from __future__ import annotations

from typing import Any

from clinaiops.fhir import conditional
from clinaiops.fhir.creates import PARSERS, Item, create, parse
from clinaiops.fhir.http import HTTP_REASONS, FhirError, Issue, operation_outcome
from clinaiops.fhir.observation_input import Subjects
from clinaiops.fhir.resources import Created
from patients.ingestion import MAX_BATCH_ITEMS

# Each order re-judges the patient's course (readings, alerts, labs, bounds) while the Bundle's
# transaction holds its locks: a Bundle is a visit's orders, not a migration.
MAX_BUNDLE_ORDERS = 100


def _entry_target(entry: Any, index: int, base: str) -> str:
    """The type the entry creates (``POST <type>``)."""
    prefix = f"Bundle.entry[{index}]"
    if not isinstance(entry, dict):
        raise FhirError.one(400, "an entry must be an object", expression=prefix, code="structure")
    request = entry.get("request") or {}
    method = request.get("method")
    url = str(request.get("url") or "")
    path = url[len(base) :] if url.startswith(base) else url
    path = path.split("?")[0].strip("/")
    if method != "POST" or path not in PARSERS:
        raise FhirError.one(
            400,
            f"only POST {' and POST '.join(PARSERS)} entries are processed here, not "
            f"{method} {url}",
            expression=f"{prefix}.request",
            code="not-supported",
        )
    return path


def _parse_entry(entry: Any, target: str | FhirError, user, base: str, subjects: Subjects) -> Item:
    """What the entry asks created, why it cannot be, or — for ``request.ifNoneExist``
    criteria that match — the answer already (200 with the match, or 412)."""
    if isinstance(target, FhirError):
        return target
    try:
        criteria = entry["request"].get("ifNoneExist")
        if criteria is not None:
            if not isinstance(criteria, str):
                raise FhirError.one(400, "request.ifNoneExist must be a string", code="structure")
            matched = conditional.existing(user, target, criteria)
            if matched is not None:
                return matched
        return parse(target, entry.get("resource"), user, base, subjects=subjects)
    except FhirError as error:
        return error


def _targets(entries: list, base: str) -> list[str | FhirError]:
    """What each entry creates, or why it is refused; 413 for a Bundle of too many orders."""
    targets: list[str | FhirError] = []
    for index, entry in enumerate(entries):
        try:
            targets.append(_entry_target(entry, index, base))
        except FhirError as error:
            targets.append(error)
    orders = targets.count("MedicationRequest")
    if orders > MAX_BUNDLE_ORDERS:
        raise FhirError.one(
            413,
            f"a Bundle holds at most {MAX_BUNDLE_ORDERS} MedicationRequest orders; this one has "
            f"{orders}. Nothing was stored; split it.",
            expression="Bundle.entry",
            code="too-costly",
        )
    return targets


def _in_bundle(index: int, issues: list[Issue]) -> list[Issue]:
    """Issues of entry ``index`` with expressions rooted at the Bundle."""
    prefix = f"Bundle.entry[{index}].resource"
    return [
        issue if (issue.expression or "").startswith("Bundle.") else issue.prefixed(prefix)
        for issue in issues
    ]


def _shell(body: Any) -> tuple[str, list]:
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise FhirError.one(
            400,
            "POST to the base takes a Bundle of type transaction or batch",
            expression="Bundle.resourceType",
            code="structure",
        )
    kind = body.get("type")
    if kind not in ("transaction", "batch"):
        raise FhirError.one(
            400,
            f"Bundle.type {kind!r} is not processed here; use transaction or batch",
            expression="Bundle.type",
            code="not-supported",
        )
    entries = body.get("entry", [])
    if not isinstance(entries, list):
        raise FhirError.one(
            400, "entry must be a list", expression="Bundle.entry", code="structure"
        )
    if len(entries) > MAX_BATCH_ITEMS:
        raise FhirError.one(
            413,
            f"a Bundle holds at most {MAX_BATCH_ITEMS} entries; this one has {len(entries)}. "
            "Nothing was stored; split it.",
            expression="Bundle.entry",
            code="too-costly",
        )
    return kind, entries


def _response_entry(outcome: Created, with_resource: bool) -> dict[str, Any]:
    if outcome.failed or outcome.resource is None:
        return {
            "response": {
                "status": HTTP_REASONS.get(outcome.status, str(outcome.status)),
                "outcome": operation_outcome(outcome.issues),
            }
        }
    resource = outcome.resource
    version = resource["meta"]["versionId"]
    response: dict[str, Any] = {
        "status": HTTP_REASONS[outcome.status],
        "location": f"{resource['resourceType']}/{resource['id']}/_history/{version}",
        "etag": f'W/"{version}"',
        "lastModified": resource["meta"]["lastUpdated"],
    }
    if outcome.issues:  # what the client should know about a success (an order's interval)
        response["outcome"] = operation_outcome(outcome.issues)
    entry: dict[str, Any] = {"response": response}
    if with_resource:
        entry["resource"] = resource
    return entry


def process_bundle(body: Any, user, base: str, *, with_resources: bool) -> dict[str, Any]:
    """The response Bundle; raises FhirError (an OperationOutcome answer) when a transaction
    fails or the Bundle itself is unusable."""
    kind, entries = _shell(body)
    targets = _targets(entries, base)
    subjects: Subjects = {}  # each subject looked up and checked once per Bundle
    parsed = [
        _parse_entry(entry, target, user, base, subjects)
        for entry, target in zip(entries, targets, strict=True)
    ]
    outcomes = create(user, parsed, all_or_nothing=kind == "transaction")
    failures = [(index, outcome) for index, outcome in enumerate(outcomes) if outcome.failed]
    if kind == "transaction" and failures:
        issues = [
            issue for index, outcome in failures for issue in _in_bundle(index, outcome.issues)
        ]
        raise FhirError(failures[0][1].status, issues)
    return {
        "resourceType": "Bundle",
        "type": f"{kind}-response",
        "entry": [_response_entry(outcome, with_resources) for outcome in outcomes],
    }
