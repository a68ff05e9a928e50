"""Cards in the shape of CDS Hooks 2.0 ("Card Attributes"), said in the words of the review card
(``clinicians.portal.review_card``): one sentence, the expected effect and its uncertainty, the
reasons in words, the largest contributions, the model and its card.

Pure: values in, JSON-ready dicts out; no query, no write. ``summary`` is kept under 140
characters, as the specification requires; everything else goes into ``detail`` (GitHub
Flavored Markdown, our words escaped).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from clinicians.models import Alert, Recommendation, RecommendationStatus
from clinicians.portal.review_card import ReviewCard, effect_interval, signed_mmhg
from patients.formulary import FORMULARY

SUMMARY_MAX = 139  # "<140-character summary"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
TOPIC_SYSTEM = "urn:clinaiops:cds-topic"
OVERRIDE_SYSTEM = "urn:clinaiops:cds-override-reason"


@dataclass(frozen=True)
class OverrideReason:
    code: str
    display: str
    rejects: bool  # overriding with it rejects the proposal (else the proposal stays open)

    def coding(self) -> dict[str, str]:
        return {"code": self.code, "system": OVERRIDE_SYSTEM, "display": self.display}


# Why a clinician may dismiss a proposal's card. All but the last reject the proposal, with the
# reason as the decision's reason; the last leaves it open for a decision in ClinAIOps.
OVERRIDE_REASONS: tuple[OverrideReason, ...] = (
    OverrideReason("clinical-judgement", "Not appropriate for this patient now", True),
    OverrideReason("patient-declines", "The patient declines the change", True),
    OverrideReason("office-readings-differ", "Office readings do not support the change", True),
    OverrideReason("adverse-effect", "Adverse effect or intolerance", True),
    OverrideReason("decide-later", "Decide later in ClinAIOps (the proposal stays open)", False),
)
OVERRIDE_BY_CODE = {reason.code: reason for reason in OVERRIDE_REASONS}
# Why a clinician signs an order the checks warned about (journalled with the feedback).
ORDER_OVERRIDE_REASONS: tuple[OverrideReason, ...] = (
    OverrideReason("clinical-judgement-order", "Clinical judgement: the order is intended", False),
    OverrideReason("labs-elsewhere", "Recent labs are on file elsewhere", False),
    OverrideReason("will-monitor", "Will monitor closely (early follow-up)", False),
)
ORDER_OVERRIDE_BY_CODE = {reason.code: reason for reason in ORDER_OVERRIDE_REASONS}

_MARKDOWN_SPECIALS = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")


def md(text: object) -> str:
    """Our words as literal Markdown text (no emphasis, link or HTML can come of them)."""
    return _MARKDOWN_SPECIALS.sub(r"\\\1", str(text))


def short(text: str, limit: int = SUMMARY_MAX) -> str:
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "…"


def number(value: Decimal | float | int) -> int | float:
    decimal = Decimal(str(value))
    return int(decimal) if decimal == decimal.to_integral_value() else float(decimal)


@dataclass(frozen=True)
class Urls:
    """Where the cards point: our base URL, the EHR's patient id (for the suggested order)."""

    base: str
    ehr_patient_id: str

    def chart(self, patient_id: int) -> str:
        return f"{self.base}/portal/patients/{patient_id}/"

    def smart_launch(self) -> str:
        """The SMART app's launch URL: the EHR opens it with ``iss`` and ``launch``."""
        return f"{self.base}/smart/launch"

    def model_card(self, version: str) -> str:
        return f"{self.base}/portal/models/{version}/"

    def proposal(self, recommendation_id: int) -> str:
        return f"{self.base}/fhir/MedicationRequest/rec-{recommendation_id}"


def _review_link(urls: Urls, patient_id: int, **app_context: Any) -> dict[str, Any]:
    return {
        "label": "Review in ClinAIOps",
        "url": urls.smart_launch(),
        "type": "smart",
        "appContext": json.dumps({"patient": patient_id, **app_context}, sort_keys=True),
    }


# --- patient-view ------------------------------------------------------------------------------


def crisis_card(alert: Alert, *, card_uuid: str, urls: Urls) -> dict[str, Any]:
    evidence = alert.evidence or {}
    lines = [f"**Hypertensive crisis, open since {alert.opened_at:%Y-%m-%d %H:%M} UTC.**", ""]
    lines.append(md(alert.message))
    readings = evidence.get("readings") if isinstance(evidence, dict) else None
    if isinstance(readings, list) and readings:
        lines += ["", "Readings that raised it:"]
        for reading in readings[:5]:
            if isinstance(reading, dict):
                lines.append(
                    "- "
                    + md(
                        f"{reading.get('systolic_mmhg', reading.get('systolic', '?'))}/"
                        f"{reading.get('diastolic_mmhg', reading.get('diastolic', '?'))} mmHg "
                        f"at {reading.get('measured_at', '?')}"
                    )
                )
    lines += ["", "The dose model's proposals are blocked while the crisis is open."]
    return {
        "uuid": card_uuid,
        "summary": short(f"Hypertensive crisis (home readings): {alert.message}"),
        "indicator": "critical",
        "detail": "\n".join(lines),
        "source": {
            "label": "ClinAIOps safety rules",
            "url": urls.chart(alert.patient_id),
            "topic": {
                "system": TOPIC_SYSTEM,
                "code": "hypertensive-crisis",
                "display": "Hypertensive crisis",
            },
        },
        "links": [_review_link(urls, alert.patient_id, alert=alert.pk)],
    }


def _effect_lines(rec: Recommendation, review: ReviewCard) -> list[str]:
    effect = rec.expected_effect or {}
    systolic = effect.get("systolic_mmhg")
    if systolic is None:
        return ["Expected effect: not given by the model."]
    text = f"Expected effect: {signed_mmhg(float(systolic), always_sign=False)} mmHg systolic"
    low, high = effect_interval(effect)
    if low is not None and high is not None:
        text += (
            f" (interval {signed_mmhg(low, always_sign=False)} to "
            f"{signed_mmhg(high, always_sign=False)} mmHg)"
        )
    if effect.get("diastolic_mmhg") is not None:
        text += f", {signed_mmhg(float(effect['diastolic_mmhg']), always_sign=False)} diastolic"
    lines = [md(text + ".")]
    if review.uncertainty_text:
        lines.append(md(review.uncertainty_text))
    return lines


def _contribution_lines(review: ReviewCard) -> list[str]:
    contributions = review.contributions
    if contributions is None:
        return [
            "- " + md(f"{row.feature}: {row.value_text} (threshold {row.threshold_text})")
            for row in review.thresholds
        ]
    lines = [
        "- " + md(f"{item.feature} ({item.value_text}): {item.shap_text} mmHg")
        for item in contributions.top
    ]
    if contributions.others_count:
        lines.append("- " + md(contributions.others_label))
    return lines


def order_resource(rec: Recommendation, urls: Urls, dose_mg: Decimal) -> dict[str, Any]:
    """The EHR order the suggestion creates: a draft, ``basedOn`` our proposal."""
    drug = FORMULARY[rec.medication]
    return {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{urls.ehr_patient_id}"},
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": drug.rxnorm, "display": drug.name}],
            "text": drug.name,
        },
        "dosageInstruction": [
            {
                "text": f"{drug.name} {number(dose_mg)} mg once daily",
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": number(dose_mg),
                            "unit": "mg",
                            "system": UCUM,
                            "code": "mg",
                        }
                    }
                ],
            }
        ],
        "basedOn": [
            {"reference": urls.proposal(rec.pk), "display": f"ClinAIOps proposal rec-{rec.pk}"}
        ],
        "note": [{"text": f"Proposed by the ClinAIOps dose model {rec.model_version}."}],
    }


def proposal_card(
    rec: Recommendation,
    review: ReviewCard,
    *,
    card_uuid: str,
    suggestion_uuid: str | None,
    urls: Urls,
) -> dict[str, Any]:
    """A proposal waiting for a clinician (``pending_review``) or blocked. Only the first gets a
    suggestion: a blocked one needs an explicit override, given in ClinAIOps with the reasons
    beside it, not by a button in another system."""
    is_blocked = rec.status == RecommendationStatus.BLOCKED
    state = (
        "**Blocked**: it cannot reach the patient; a clinician may decide it in ClinAIOps "
        "with an explicit override."
        if is_blocked
        else "**Waiting for a clinician's review.**"
    )
    lines = [md(review.summary), "", state, "", *_effect_lines(rec, review)]
    if review.reasons:
        lines += ["", "Why:", *("- " + md(reason) for reason in review.reasons)]
    contribution_lines = _contribution_lines(review)
    if contribution_lines:
        lines += ["", "Largest contributions to the expected change (SHAP):", *contribution_lines]
    lines += [
        "",
        f"Model: {md(rec.model_version)} — [model card]({urls.model_card(rec.model_version)})",
    ]
    card: dict[str, Any] = {
        "uuid": card_uuid,
        "summary": short(("Blocked proposal: " if is_blocked else "") + review.summary),
        "indicator": "warning",
        "detail": "\n".join(lines),
        "source": {
            "label": f"ClinAIOps dose model {rec.model_version}",
            "url": urls.model_card(rec.model_version),
            "topic": {
                "system": TOPIC_SYSTEM,
                "code": "antihypertensive-titration",
                "display": "Antihypertensive dose titration",
            },
        },
        "overrideReasons": [reason.coding() for reason in OVERRIDE_REASONS],
        "links": [
            _review_link(urls, rec.patient_id, recommendation=rec.pk),
            {"label": "Model card", "url": urls.model_card(rec.model_version), "type": "absolute"},
        ],
    }
    if suggestion_uuid is not None and rec.proposed_dose_mg is not None:
        dose = rec.proposed_dose_mg
        card["suggestions"] = [
            {
                "label": f"Order {rec.medication} {number(dose)} mg as proposed",
                "uuid": suggestion_uuid,
                "isRecommended": True,
                "actions": [
                    {
                        "type": "create",
                        "description": (
                            f"Create a draft order for {rec.medication} {number(dose)} mg "
                            f"based on ClinAIOps proposal rec-{rec.pk}; accepting it approves "
                            "the proposal in ClinAIOps."
                        ),
                        "resource": order_resource(rec, urls, dose),
                    }
                ],
            }
        ]
        card["selectionBehavior"] = "at-most-one"
    return card


def has_suggestion(rec: Recommendation) -> bool:
    return (
        rec.status == RecommendationStatus.PENDING_REVIEW
        and rec.kind == "titrate"
        and rec.proposed_dose_mg is not None
        and rec.medication in FORMULARY
    )


# --- order-sign --------------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderFinding:
    severity: str  # "critical" or "warning"
    message: str


def order_check_card(
    *,
    medication: str,
    dose_mg: Decimal | None,
    findings: Sequence[OrderFinding],
    card_uuid: str,
    patient_id: int,
    urls: Urls,
) -> dict[str, Any]:
    indicator = "critical" if any(f.severity == "critical" for f in findings) else "warning"
    what = f"{medication} {number(dose_mg)} mg" if dose_mg is not None else medication
    first = findings[0].message if findings else ""
    more = f" (+{len(findings) - 1} more)" if len(findings) > 1 else ""
    lines = [f"Draft order **{md(what)}**, checked against the ClinAIOps course rules:", ""]
    lines += [
        f"- {'**Stop:** ' if f.severity == 'critical' else ''}{md(f.message)}" for f in findings
    ]
    return {
        "uuid": card_uuid,
        "summary": short(f"{what}: {first}{more}"),
        "indicator": indicator,
        "detail": "\n".join(lines),
        "source": {
            "label": "ClinAIOps treatment-course rules",
            "url": urls.chart(patient_id),
            "topic": {
                "system": TOPIC_SYSTEM,
                "code": "antihypertensive-order-check",
                "display": "Antihypertensive order check",
            },
        },
        "overrideReasons": [reason.coding() for reason in ORDER_OVERRIDE_REASONS],
        "links": [_review_link(urls, patient_id)],
    }


def sorted_cards(cards: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Most urgent first (the client may sort again)."""
    rank = {"critical": 0, "warning": 1, "info": 2}
    return sorted(cards, key=lambda card: rank[card["indicator"]])
