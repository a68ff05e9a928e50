"""``DetectedIssue``: why a proposal was blocked. Each reason the gate and the treatment-course
rules gave a blocked proposal (``Recommendation.reasons``: ``{code, message}``; older proposals
carry only ``gate_reasons`` codes, put in the gate's words) is one DetectedIssue, id
``rec-<proposal id>-<n>`` (n from 1, in the order the rules gave them):

- ``status`` final, ``severity`` high (it stops the change from reaching the patient),
- ``code`` ``urn:clinaiops:course-reason|<code>`` — the system of the 409 an order gets for the
  same reason — with the words as ``text``; ``detail`` the reason in words,
- ``implicated`` the proposal (``MedicationRequest/rec-<id>``), which links back to them in
  ``MedicationRequest.detectedIssue``; ``patient``; ``identifiedDateTime`` when it was made;
  ``author`` the software that judged it (the gate is part of the proposal's producer: the
  Device of its model version when there is one),
- ``mitigation`` once a clinician decided the proposal over the block (an explicit, journalled
  override): who, when.

Visible exactly when the proposal is (``clinicians.recommendation``: a patient sees a blocked
proposal only once a clinician approved it over the block); reads are journalled as reads of
the recommendation.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Case, F, Q, When

from clinaiops.fhir.devices import device_ids, device_reference
from clinaiops.fhir.http import not_found
from clinaiops.fhir.practitioners import practitioner_reference
from clinaiops.fhir.resources import (
    ResourceHandler,
    SearchResult,
    instant,
    patient_reference,
    with_meta,
)
from clinaiops.fhir.search import (
    LAST_UPDATED,
    SearchParam,
    SearchRequest,
    all_of,
    date_q,
    reference_id,
    reference_q,
)
from clinicians.gate import REASON_TEXT
from clinicians.models import Recommendation, Tier
from clinicians.selectors import recommendations_visible_to
from core.ids import parse_id

REASON_SYSTEM = "urn:clinaiops:course-reason"
MITIGATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
# A proposal has a handful of reasons; the composite position (proposal id × this + n) orders
# them in one integer for the paging cursor.
_PER_PROPOSAL = 1000


def block_reasons(rec: Recommendation) -> list[dict[str, str]]:
    """The proposal's block reasons in words (the gate's words for a reason without its own)."""
    stored = [r for r in rec.reasons or [] if isinstance(r, dict) and r.get("code")]
    items = stored or [{"code": code} for code in rec.gate_reasons or []]
    reasons = []
    for item in items[: _PER_PROPOSAL - 1]:
        code = str(item["code"])
        message = str(item.get("message") or "").strip()
        if not message or message == code:
            message = REASON_TEXT.get(code) or code.replace("_", " ").capitalize() + "."
        reasons.append({"code": code, "message": message})
    return reasons


def issue_ids(rec: Recommendation) -> list[str]:
    """The DetectedIssue ids of a proposal: none unless it was blocked."""
    if rec.tier != Tier.BLOCKED:
        return []
    return [f"rec-{rec.pk}-{n}" for n in range(1, len(block_reasons(rec)) + 1)]


def to_fhir(
    rec: Recommendation, n: int, reason: dict[str, str], devices: dict[str, str] | None = None
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "DetectedIssue",
        "id": f"rec-{rec.pk}-{n}",
        "status": "final",
        "code": {
            "coding": [{"system": REASON_SYSTEM, "code": reason["code"]}],
            "text": reason["message"],
        },
        "severity": "high",
        "patient": patient_reference(rec.patient_id),
        "identifiedDateTime": instant(rec.created_at),
        "author": device_reference(rec.model_version, devices),
        "implicated": [{"reference": f"MedicationRequest/rec-{rec.pk}"}],
        "detail": reason["message"],
    }
    if rec.overrode_block and rec.decided_at is not None:
        mitigation: dict[str, Any] = {
            "action": {
                "coding": [{"system": MITIGATION_SYSTEM, "code": "EMAUTH"}],
                "text": "Decided by a clinician over the block, with an explicit override",
            },
            "date": instant(rec.decided_at),
        }
        if rec.decided_by_id is not None:
            mitigation["author"] = practitioner_reference(rec.decided_by_id)
        resource["mitigation"] = [mitigation]
    mitigated = rec.decided_at if rec.overrode_block and rec.decided_at else None
    return with_meta(resource, mitigated or rec.created_at)


def _split(resource_id: str) -> tuple[int, int] | None:
    """``rec-<id>-<n>`` → (id, n)."""
    kind, _, rest = resource_id.partition("-")
    rec_text, _, n_text = rest.partition("-")
    rec_id, n = parse_id(rec_text), parse_id(n_text)
    if kind != "rec" or rec_id is None or n is None or not 0 < n < _PER_PROPOSAL:
        return None
    return rec_id, n


def _blocked(user):
    return recommendations_visible_to(user).filter(tier=Tier.BLOCKED)


def read(user, resource_id: str) -> tuple[dict[str, Any], list[int]]:
    parts = _split(resource_id)
    rec = _blocked(user).filter(pk=parts[0]).first() if parts else None
    reasons = block_reasons(rec) if rec is not None else []
    if rec is None or parts is None or parts[1] > len(reasons):
        raise not_found("DetectedIssue", resource_id)
    return to_fhir(rec, parts[1], reasons[parts[1] - 1]), [rec.patient_id]


def _implicated_q(raw: str) -> Q:
    target = reference_id("implicated", raw, "MedicationRequest")
    rec_id = parse_id(target.removeprefix("rec-")) if target.startswith("rec-") else None
    return Q(pk=rec_id) if rec_id is not None else Q(pk__in=[])


def _id_q(raw: str) -> Q:
    parts = _split(raw.strip())
    return Q(pk=parts[0]) if parts else Q(pk__in=[])


SEARCH_PARAMS = (
    SearchParam("_id", "token", "rec-<proposal id>-<n>."),
    LAST_UPDATED,
    SearchParam("patient", "reference", "The patient: Patient/<id> or <id>."),
    SearchParam("implicated", "reference", "The blocked proposal: MedicationRequest/rec-<id>."),
)


def search(user, request: SearchRequest) -> SearchResult:
    """The block reasons of the proposals the filters keep, by proposal id, then in the order
    the rules gave them; paged on that position (``_cursor``) like every search."""
    recs = _blocked(user).annotate(
        fhir_last_updated=Case(
            When(overrode_block=True, decided_at__isnull=False, then=F("decided_at")),
            default=F("created_at"),
        )
    )
    recs = recs.filter(fhir_last_updated__lte=request.as_of)
    recs = all_of(
        request,
        LAST_UPDATED.name,
        lambda v: date_q(LAST_UPDATED.name, v, "fhir_last_updated"),
        recs,
    )
    recs = all_of(
        request, "patient", lambda v: reference_q("patient", v, "Patient", "patient_id"), recs
    )
    recs = all_of(request, "implicated", _implicated_q, recs)
    recs = all_of(request, "_id", _id_q, recs)
    wanted_ids = {
        parts
        for alternatives in request.all("_id")
        for raw in alternatives
        if (parts := _split(raw.strip()))
    }
    recs = recs.order_by("pk")

    def keep(rec: Recommendation, n: int) -> bool:
        return not request.all("_id") or (rec.pk, n) in wanted_ids

    issues = [
        (rec, n, reason)
        for rec in recs
        for n, reason in enumerate(block_reasons(rec), start=1)
        if keep(rec, n)
    ]
    total = len(issues)
    if request.after is not None:
        after = request.after[0]
        issues = [item for item in issues if item[0].pk * _PER_PROPOSAL + item[1] > after]
    if request.summary_count or request.count == 0:
        return SearchResult(total=total, resources=[], patient_ids=[])
    page = issues[request.offset : request.offset + request.count]
    more = len(issues) > request.offset + request.count and bool(page)
    devices = device_ids(rec.model_version for rec, _, _ in page)
    last = page[-1][0].pk * _PER_PROPOSAL + page[-1][1] if page else 0
    return SearchResult(
        total=total,
        resources=[to_fhir(rec, n, reason, devices) for rec, n, reason in page],
        patient_ids=sorted({rec.patient_id for rec, _, _ in page}),
        next_key=(last, 0, last) if more else None,
    )


HANDLER = ResourceHandler(
    type="DetectedIssue",
    documentation="Why a proposal was blocked: one DetectedIssue per reason the gate and the "
    "treatment-course rules gave (code urn:clinaiops:course-reason, detail in words, severity "
    "high, status final), implicating the proposal (MedicationRequest/rec-<id>, whose "
    "detectedIssue lists them); mitigation once a clinician overrode the block. Visible with "
    "the proposal.",
    read_action="clinicians.view_recommendation",
    search_params=SEARCH_PARAMS,
    read=read,
    search=search,
    sorts=(),
)
