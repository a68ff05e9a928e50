"""A posted ``MedicationRequest`` with intent ``order`` → the arguments of
``clinicians.decisions.order_dose``: patient, medication, dose, reason.

This layer checks only what is FHIR: the caller is a clinician, the resource parses
(fhir.resources, R4B models, wire-compatible with R4 for MedicationRequest), it is an active
order for a Patient of the caller's care team, the drug is an RxNorm ingredient of the formulary,
the dose a JSON number in UCUM ``mg``. Whether the dose may be given — the labelled range, the
safety gate, the treatment-course rules — is ``order_dose``'s, so an EHR's order is judged
exactly as a clinician's decision; ``DOSE_VALUE`` is where its refusals point.

As for Observations (``observation_input``), elements this server cannot honour are refused
rather than dropped: a dosage timing, a route, a second dosage, a requester other than the
signed-in clinician, an identifier (orders are not idempotent: there is nowhere to keep it) —
each would be lost, and in an order a lost element changes what is given. Plain
``extension``\\ s may be ignored (FHIR allows it); ``modifierExtension``\\ s, at any level, may
not.

``basedOn`` names at most one ClinAIOps proposal (``MedicationRequest/rec-<id>``, relative or
at this server's base): the order is then the clinician's decision on that proposal
(``clinicians.decisions.decide_recommendation_by_order``). The proposal must be one the caller
sees (else 422, as an unknown one), of the order's patient and drug (422), and still open (409:
it was decided, withdrawn or superseded).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from fhir.resources.R4B.medicationrequest import MedicationRequest as FhirMedicationRequest
from pydantic import ValidationError

from clinaiops.fhir.http import FhirError, Issue
from clinaiops.fhir.resources import RXNORM, UCUM, visible_subject
from clinicians.evaluation import OPEN_STATUSES
from clinicians.models import Recommendation
from clinicians.selectors import recommendations_visible_to
from core import authz
from core.errors import Forbidden
from core.ids import parse_id
from patients.formulary import FORMULARY
from patients.models import Patient

ROOT = "MedicationRequest"
DOSAGE = f"{ROOT}.dosageInstruction[0]"
DOSE_QUANTITY = f"{DOSAGE}.doseAndRate[0].doseQuantity"
DOSE_VALUE = f"{DOSE_QUANTITY}.value"
MEDICATION = f"{ROOT}.medicationCodeableConcept"
BASED_ON = f"{ROOT}.basedOn[0].reference"
PROPOSAL_PREFIX = "MedicationRequest/rec-"
DOSE_UNIT = "mg"
# ``order_dose`` keeps at most this much of the reason: a longer one is refused, not cut.
MAX_REASON = 500
BY_RXNORM = {drug.rxnorm: name for name, drug in FORMULARY.items()}
# The elements honoured, level by level. ``None``: the element is taken (or ignored) whole;
# a dict or a set: only these children. Plain extensions, element ids and primitive extensions
# (``_status``) are accepted at every level, ``modifierExtension`` at none.
_HONOURED: dict[str, Any] = {
    "resourceType": None,
    "id": None,  # ignored on create (http.html#create)
    "meta": None,  # set by the server
    "text": None,  # narrative: regenerated from the stored order
    "status": None,
    "intent": None,
    "subject": None,
    "authoredOn": None,  # set by the server: the time the order takes effect
    "medicationCodeableConcept": None,  # the RxNorm coding is read; other codings are names
    "dosageInstruction": {"doseAndRate": {"doseQuantity": {"value", "unit", "system", "code"}}},
    "reasonCode": {"text"},
    "note": {"text"},
    "basedOn": {"reference", "type", "display"},  # one proposal (rec-<id>), see _based_on
    "requester": {"reference", "type", "display"},  # the caller's own Practitioner only
}
# Why some elements commonly sent by EHRs are refused (the rest get a generic sentence).
_WHY_REFUSED = {
    "identifier": "orders are not idempotent here and the identifier cannot be kept; remove "
    "it, and do not re-post an order whose answer was lost: search MedicationRequest?patient="
    "…&intent=order to see whether it was taken",
    "medicationReference": "send the drug as medicationCodeableConcept with an RxNorm coding",
    "timing": "the formulary drugs are ordered as one daily dose; remove the timing",
    "text": "free-text dosage instructions cannot be honoured; send the dose in doseQuantity",
    "coding": "a reason is kept as words only; send it as reasonCode[0].text",
}


@dataclass
class ParsedOrder:
    patient: Patient
    medication: str  # a FORMULARY name
    dose_mg: Decimal  # as sent; order_dose judges it (plain decimal, labelled range, the gate)
    reason: str
    based_on: Recommendation | None = None  # the proposal the order decides (basedOn)


def _refusal(name: str, path: str) -> Issue:
    if name == "modifierExtension":
        return Issue(
            "modifierExtension is not understood by this server and changes the meaning of the "
            "resource: refused (FHIR extensibility rules)",
            "not-supported",
            path,
        )
    why = _WHY_REFUSED.get(name, "remove it or send the value another way (it would be lost)")
    return Issue(f"{name} is not honoured by this server: {why}", "not-supported", path)


def _unhonoured(element: Any, honoured: dict[str, Any] | set[str], path: str) -> list[Issue]:
    """Every element of ``element`` (a resource or a part of one) outside ``honoured``."""
    if isinstance(element, list):
        return [
            issue
            for index, item in enumerate(element)
            for issue in _unhonoured(item, honoured, f"{path}[{index}]")
        ]
    if not isinstance(element, dict):
        return []  # a primitive, or a malformed value: the model check names it
    issues = []
    for name, value in element.items():
        child = f"{path}.{name}"
        if name == "modifierExtension" or (
            name not in honoured and name not in ("extension", "id") and not name.startswith("_")
        ):
            issues.append(_refusal(name, child))
        elif isinstance(honoured, dict) and honoured.get(name) is not None:
            issues.extend(_unhonoured(value, honoured[name], child))
        else:
            issues.extend(_modifiers(value, child))
    return issues


def _modifiers(element: Any, path: str) -> list[Issue]:
    """A ``modifierExtension`` anywhere inside an element taken whole."""
    if isinstance(element, list):
        return [
            issue
            for index, item in enumerate(element)
            for issue in _modifiers(item, f"{path}[{index}]")
        ]
    if not isinstance(element, dict):
        return []
    return [
        issue
        for name, value in element.items()
        for issue in (
            [_refusal(name, f"{path}.{name}")]
            if name == "modifierExtension"
            else _modifiers(value, f"{path}.{name}")
        )
    ]


def _structure_issues(raw: dict[str, Any]) -> list[Issue]:
    issues = _unhonoured(raw, _HONOURED, ROOT)
    try:
        FhirMedicationRequest.model_validate(raw)
    except ValidationError as error:
        for detail in error.errors(include_url=False):
            text = ROOT
            for part in (part for part in detail["loc"] if part != "__root__"):
                text += f"[{part}]" if isinstance(part, int) else f".{part}"
            message = "unknown element" if detail["type"] == "extra_forbidden" else detail["msg"]
            issues.append(Issue(message, "structure", text))
    return issues


def _one(raw: dict[str, Any], name: str, path: str, *, required: bool) -> dict[str, Any] | None:
    """The single element of the list ``name`` (FHIR allows several; an order here has one)."""
    items = raw.get(name) or []
    if len(items) > 1:
        raise FhirError.one(
            400,
            f"an order here has one {name}; this one has {len(items)}",
            expression=f"{path}[1]",
            code="not-supported",
        )
    if not items:
        if required:
            raise FhirError.one(400, f"{name} is required", expression=path, code="required")
        return None
    return items[0]


def _code_value(raw: dict[str, Any], name: str, wanted: str, why: str) -> None:
    if raw.get(name) != wanted:
        raise FhirError.one(
            400,
            f"{name} must be {wanted} ({why}), not {raw.get(name)!r}",
            expression=f"{ROOT}.{name}",
            code="value",
        )


def _medication(raw: dict[str, Any]) -> str:
    codings = (raw.get("medicationCodeableConcept") or {}).get("coding") or []
    found = {
        BY_RXNORM[coding.get("code")]
        for coding in codings
        if coding.get("system") == RXNORM and coding.get("code") in BY_RXNORM
    }
    if len(found) != 1:
        supported = ", ".join(f"{drug.rxnorm} ({name})" for name, drug in FORMULARY.items())
        problem = "names more than one formulary drug" if found else "names no formulary drug"
        raise FhirError.one(
            400,
            f"medicationCodeableConcept {problem}; expected exactly one RxNorm ({RXNORM}) "
            f"ingredient coding of: {supported}",
            expression=MEDICATION,
            code="code-invalid",
        )
    return found.pop()


def _dose(raw: dict[str, Any]) -> Decimal:
    """The dose as sent, exactly (a JSON number: ``2.5`` is ``Decimal("2.5")``, not the binary
    float nearest to it). Whether it is a plain dose in range is ``order_dose``'s to say."""
    dosage = _one(raw, "dosageInstruction", f"{ROOT}.dosageInstruction", required=True)
    assert dosage is not None
    dose_and_rate = _one(dosage, "doseAndRate", f"{DOSAGE}.doseAndRate", required=True)
    assert dose_and_rate is not None
    quantity = dose_and_rate.get("doseQuantity")
    if not isinstance(quantity, dict):
        raise FhirError.one(
            400,
            f"a doseQuantity in {DOSE_UNIT} is required",
            expression=DOSE_QUANTITY,
            code="required",
        )
    if quantity.get("system") != UCUM:
        raise FhirError.one(
            400,
            f"the unit must be UCUM (system {UCUM}), code {DOSE_UNIT}",
            expression=f"{DOSE_QUANTITY}.system",
        )
    if quantity.get("code") != DOSE_UNIT:
        raise FhirError.one(
            400,
            f"unit code {quantity.get('code')!r} is not {DOSE_UNIT!r} (UCUM): doses are ordered "
            "in milligrams",
            expression=f"{DOSE_QUANTITY}.code",
        )
    if "value" not in quantity:
        raise FhirError.one(400, "value is required", expression=DOSE_VALUE, code="required")
    value = quantity["value"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FhirError.one(400, f"must be a number of {DOSE_UNIT}", expression=DOSE_VALUE)
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))


def _reason(raw: dict[str, Any]) -> str:
    parts = []
    path = ROOT
    for name in ("reasonCode", "note"):
        element = _one(raw, name, f"{ROOT}.{name}", required=False)
        text = (element or {}).get("text")
        if isinstance(text, str) and text.strip():
            parts.append(text.strip())
            path = f"{ROOT}.{name}[0].text"
    reason = "; ".join(parts)
    if len(reason) > MAX_REASON:
        raise FhirError.one(
            400,
            f"the reason (reasonCode[0].text and note[0].text together) is longer than "
            f"{MAX_REASON} characters; it would be cut",
            expression=path,
            code="too-long",
        )
    return reason


def _relative(reference: str, base: str) -> str:
    """``reference`` relative to this server: at the request's base, or at the public base
    the CDS Hooks cards name (``OIDC_ISSUER``/fhir); any other absolute URL is left whole."""
    bases = [base]
    if settings.OIDC_ISSUER:
        bases.append(settings.OIDC_ISSUER.rstrip("/") + "/fhir")
    for prefix in bases:
        if reference.startswith(prefix + "/"):
            return reference[len(prefix) + 1 :]
    return reference


def _requester(raw: dict[str, Any], user, base: str) -> None:
    """The requester is the signed-in clinician (stored and served as ``Practitioner/<id>``):
    a ``requester`` naming them is accepted, anyone else is refused rather than replaced."""
    requester = raw.get("requester")
    if requester is None:
        return
    reference = requester.get("reference") if isinstance(requester, dict) else None
    own = f"Practitioner/{user.pk}"
    if not isinstance(reference, str) or _relative(reference.strip(), base) != own:
        raise FhirError.one(
            400,
            f"requester must be the signed-in clinician ({own}) or left out: the order is "
            "recorded as theirs",
            expression=f"{ROOT}.requester",
            code="value",
        )


def _based_on(raw: dict[str, Any], user, base: str) -> Recommendation | None:
    """The proposal the order is based on, among those the caller sees: 400 for anything but
    one ``MedicationRequest/rec-<id>``, 422 ``not-found`` for one unknown or not visible (no
    existence leak). Its patient, drug and status are checked by ``check_based_on``."""
    item = _one(raw, "basedOn", f"{ROOT}.basedOn", required=False)
    if item is None:
        return None
    reference = item.get("reference") if isinstance(item, dict) else None
    if not isinstance(reference, str) or not reference.strip():
        raise FhirError.one(
            400,
            "basedOn needs a reference to a ClinAIOps proposal, MedicationRequest/rec-<id>",
            expression=BASED_ON,
            code="required",
        )
    relative = _relative(reference.strip(), base)
    rec_id = (
        parse_id(relative.removeprefix(PROPOSAL_PREFIX))
        if relative.startswith(PROPOSAL_PREFIX)
        else None
    )
    if rec_id is None or item.get("type") not in (None, ROOT):
        raise FhirError.one(
            400,
            f"basedOn must reference a ClinAIOps proposal, MedicationRequest/rec-<id>, not "
            f"{reference!r}",
            expression=BASED_ON,
            code="value",
        )
    proposal = recommendations_visible_to(user).filter(pk=rec_id).first()
    if proposal is None:
        raise FhirError.one(422, f"{relative} is not known", expression=BASED_ON, code="not-found")
    return proposal


def check_based_on(proposal: Recommendation, patient: Patient, medication: str) -> None:
    """An order decides its proposal only if it is the same patient's, for the same drug, and
    still open: 422 for another patient or drug, 409 once decided, withdrawn or superseded."""
    reference = f"{PROPOSAL_PREFIX}{proposal.pk}"
    if proposal.patient_id != patient.pk:
        raise FhirError.one(
            422,
            f"{reference} is a proposal for another patient than the order's subject",
            expression=BASED_ON,
            code="business-rule",
        )
    if proposal.medication != medication:
        raise FhirError.one(
            422,
            f"{reference} proposes {proposal.medication}, not {medication}",
            expression=BASED_ON,
            code="business-rule",
        )
    if proposal.status not in OPEN_STATUSES:
        raise FhirError.one(
            409,
            f"{reference} is already {proposal.get_status_display().lower()} "
            f"({proposal.status}): it cannot be decided again",
            expression=BASED_ON,
            code="conflict",
        )


def parse_order(raw: Any, user, base: str) -> ParsedOrder:
    """Raises FhirError: 403 for anyone but a clinician (before the resource is looked at),
    every structural issue at once, else the first semantic one; 422 for a patient the caller
    may not see, as an Observation's subject."""
    if not isinstance(raw, dict) or raw.get("resourceType") != ROOT:
        raise FhirError.one(
            400,
            "the body must be a MedicationRequest resource",
            expression=f"{ROOT}.resourceType",
            code="structure",
        )
    if not authz.can(user, "clinicians.place_orders"):
        raise FhirError.one(403, authz.message_of("clinicians.place_orders"), code="forbidden")
    issues = _structure_issues(raw)
    if issues:
        raise FhirError(400, issues)
    _code_value(raw, "intent", "order", "proposals are the model's; an EHR places orders")
    _code_value(raw, "status", "active", "an order takes effect when it is placed")
    medication = _medication(raw)
    dose = _dose(raw)
    reason = _reason(raw)
    _requester(raw, user, base)
    patient = visible_subject(raw, user, base, ROOT)
    try:
        authz.authorize(user, "patients.change_care_plan", patient)
    except Forbidden as refusal:
        raise FhirError.one(
            403, refusal.message, expression=f"{ROOT}.subject", code="forbidden"
        ) from None
    proposal = _based_on(raw, user, base)
    if proposal is not None:
        check_based_on(proposal, patient, medication)
    return ParsedOrder(
        patient=patient, medication=medication, dose_mg=dose, reason=reason, based_on=proposal
    )
