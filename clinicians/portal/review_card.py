"""The review card in words a clinician reads in ten seconds (issue 14): one sentence first, the
model's largest contributions as bars rounded to 0.1 mmHg with the rest summed, the uncertainty
flagged when the interval crosses zero, and the gate's and course rules' reasons in words.

Pure: it reads a recommendation's own fields (and the current target and regimen the selector
passes in) and returns frozen values for the template; it writes nothing and queries nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from clinicians.gate import REASON_TEXT
from clinicians.models import Recommendation, RecommendationKind
from clinicians.templatetags.portal_format import dose as dose_text

TOP_CONTRIBUTIONS = 5
WINDOW_DAYS = 7  # the evidence window of ``models_ml.features`` (home_bp_v1: 7-day means)
MINUS = "\u2212"  # the minus sign, not a hyphen
BAR_HALF_WIDTH = 100  # the bar's viewBox is 0..200 wide, zero in the middle
DRUG_FEATURE = re.compile(r"^(dose|delta)_(?P<drug>.+?)(_mg)?$")


@dataclass(frozen=True)
class Contribution:
    """One bar: how much a feature moved the predicted systolic change, rounded to 0.1 mmHg."""

    feature: str
    value_text: str
    shap_mmhg: float
    shap_text: str
    bar_x: float  # in the 0..200 viewBox, zero at 100
    bar_width: float
    lowers: bool  # the contribution lowers the predicted pressure


@dataclass(frozen=True)
class Contributions:
    top: tuple[Contribution, ...]
    others_count: int
    others_mmhg: float
    others_text: str
    others_bar_x: float
    others_bar_width: float

    @property
    def others_label(self) -> str:
        noun = "other" if self.others_count == 1 else "others"
        return f"{self.others_count} {noun}: {self.others_text} mmHg"


@dataclass(frozen=True)
class ThresholdRow:
    """A rule-based proposal's explanation: the figure it compared, and against what."""

    feature: str
    value_text: str
    threshold_text: str


@dataclass(frozen=True)
class ReviewCard:
    summary: str
    effect_may_be_nothing: bool
    uncertainty_text: str  # "" when there is nothing to say
    contributions: Contributions | None
    thresholds: tuple[ThresholdRow, ...]
    reasons: tuple[str, ...]


def review_card(
    rec: Recommendation,
    *,
    target_mmhg: tuple[int, int] | None = None,
    current_regimen: Mapping[str, object] | None = None,
) -> ReviewCard:
    """The card of one recommendation. ``target_mmhg`` is the patient's treatment target (the
    proposal does not store it); ``current_regimen`` stands in for the regimen the proposal saw
    when its evidence does not record one."""
    evidence = rec.evidence or {}
    regimen = evidence.get("regimen", current_regimen) or {}
    has_regimen = any(_positive(value) for value in regimen.values())
    low, high = effect_interval(rec.expected_effect or {})
    explanation = rec.explanation or []
    return ReviewCard(
        summary=summary_sentence(rec, target_mmhg=target_mmhg),
        effect_may_be_nothing=low is not None and high is not None and low <= 0 <= high,
        uncertainty_text=_uncertainty_text(rec.expected_effect or {}),
        contributions=top_contributions(
            explanation, medication=rec.medication, has_regimen=has_regimen
        ),
        thresholds=_thresholds(explanation, has_regimen=has_regimen),
        reasons=reasons_in_words(rec.reasons, rec.gate_reasons),
    )


# --- the sentence -------------------------------------------------------------------------------


def summary_sentence(rec: Recommendation, *, target_mmhg: tuple[int, int] | None = None) -> str:
    """One line, for example: Increase amlodipine 5 → 10 mg: home mean 148/92 over 7 days,
    above the 130/80 target; expected −6 mmHg systolic (−2 to −10)."""
    parts = [_action(rec)]
    home = _home_mean(rec.evidence or {}, target_mmhg)
    if home:
        parts.append(": " + home)
    expected = _expected(rec.expected_effect or {})
    if expected:
        parts.append(("; " if home else ": ") + expected)
    return "".join(parts)


def _action(rec: Recommendation) -> str:
    drug, current, proposed = rec.medication, rec.current_dose_mg, rec.proposed_dose_mg
    if rec.kind == RecommendationKind.ADHERENCE_NUDGE:
        return f"Remind the patient to take {drug} {dose_text(current)} mg as prescribed"
    if proposed is None:
        return f"No usable dose proposed for {drug} (now {dose_text(current)} mg)"
    if proposed == current:
        return f"Keep {drug} at {dose_text(current)} mg"
    if not current:
        return f"Start {drug} {dose_text(proposed)} mg"
    if proposed == 0:
        return f"Stop {drug} {dose_text(current)} mg"
    verb = "Increase" if proposed > current else "Reduce"
    return f"{verb} {drug} {dose_text(current)} → {dose_text(proposed)} mg"


def _home_mean(evidence: Mapping, target_mmhg: tuple[int, int] | None) -> str:
    if "mean_systolic_7d" not in evidence:
        return ""
    systolic, diastolic = evidence.get("mean_systolic_7d"), evidence.get("mean_diastolic_7d")
    if systolic is None or diastolic is None:
        return f"no home readings in the last {WINDOW_DAYS} days"
    text = f"home mean {systolic:.0f}/{diastolic:.0f} over {WINDOW_DAYS} days"
    count = evidence.get("bp_count_7d")
    if count:
        text += f" ({count} reading{'' if count == 1 else 's'})"
    if target_mmhg:
        target_sys, target_dia = target_mmhg
        if round(systolic) < target_sys and round(diastolic) < target_dia:
            where = "below"
        elif round(systolic) > target_sys or round(diastolic) > target_dia:
            where = "above"
        else:
            where = "at"
        text += f", {where} the {target_sys}/{target_dia} target"
    return text


def effect_interval(effect: Mapping) -> tuple[float | None, float | None]:
    """The expected systolic change's interval (low, high), or (None, None) when the proposal
    gave no uncertainty. ``uncertainty_mmhg`` is the half-width (``models_ml.policy``)."""
    systolic, spread = effect.get("systolic_mmhg"), effect.get("uncertainty_mmhg")
    if systolic is None or not spread:
        return None, None
    return float(systolic) - abs(float(spread)), float(systolic) + abs(float(spread))


def _interval_text(effect: Mapping) -> str:
    """The interval from the end nearer no change to the end farther from it, as a clinician
    says "lowers it by 2 to 10": "−2 to −10"."""
    low, high = effect_interval(effect)
    if low is None or high is None:
        return ""
    near, far = (high, low) if float(effect["systolic_mmhg"]) < 0 else (low, high)
    return f"{signed_mmhg(near, always_sign=False)} to {signed_mmhg(far, always_sign=False)}"


def _expected(effect: Mapping) -> str:
    systolic = effect.get("systolic_mmhg")
    if systolic is None:
        return ""
    text = f"expected {signed_mmhg(float(systolic), always_sign=False)} mmHg systolic"
    interval = _interval_text(effect)
    return f"{text} ({interval})" if interval else text


def _uncertainty_text(effect: Mapping) -> str:
    low, high = effect_interval(effect)
    if low is None or high is None or not (low <= 0 <= high):
        return ""
    return (
        f"Uncertain: the expected change ({_interval_text(effect)} mmHg) includes zero — "
        "the effect may be nothing."
    )


# --- the contributions --------------------------------------------------------------------------


def top_contributions(
    explanation: Iterable[Mapping],
    *,
    medication: str,
    has_regimen: bool,
    top_n: int = TOP_CONTRIBUTIONS,
) -> Contributions | None:
    """The ``top_n`` largest SHAP contributions by absolute size; everything else summed into
    "N others". Rows about drugs this proposal does not change (another drug's dose, or its
    change when that is 0) and adherence when the patient takes no drug (it is 1 by convention,
    ``models_ml.features``) are not shown on their own: they go into the sum."""
    rows = [item for item in explanation if item.get("shap_mmhg") is not None]
    if not rows:
        return None
    deltas = {
        match["drug"]: item.get("value")
        for item in rows
        if (match := DRUG_FEATURE.match(str(item.get("key", "")))) and match[1] == "delta"
    }
    shown: list[Mapping] = []
    folded: list[Mapping] = []
    for item in rows:
        (folded if _is_folded(item, medication, has_regimen, deltas) else shown).append(item)
    shown.sort(key=lambda item: -abs(float(item["shap_mmhg"])))
    top, rest = shown[:top_n], shown[top_n:] + folded
    others = round(sum(float(item["shap_mmhg"]) for item in rest), 1)
    scale = max([abs(round(float(item["shap_mmhg"]), 1)) for item in top] + [abs(others)]) or 1.0

    def bar(value: float) -> tuple[float, float]:
        width = round(abs(value) / scale * BAR_HALF_WIDTH, 1)
        return (round(BAR_HALF_WIDTH - width, 1) if value < 0 else BAR_HALF_WIDTH), width

    bars = []
    for item in top:
        value = round(float(item["shap_mmhg"]), 1)
        x, width = bar(value)
        bars.append(
            Contribution(
                feature=str(item.get("feature") or item.get("key") or "feature"),
                value_text=feature_value_text(item.get("value"), str(item.get("unit") or "")),
                shap_mmhg=value,
                shap_text=signed_mmhg(value),
                bar_x=x,
                bar_width=width,
                lowers=value < 0,
            )
        )
    others_x, others_width = bar(others)
    return Contributions(
        top=tuple(bars),
        others_count=len(rest),
        others_mmhg=others,
        others_text=signed_mmhg(others),
        others_bar_x=others_x,
        others_bar_width=others_width,
    )


def _is_folded(
    item: Mapping, medication: str, has_regimen: bool, deltas: Mapping[str, object]
) -> bool:
    key = str(item.get("key", ""))
    if key.startswith("adherence") and not has_regimen:
        return True
    match = DRUG_FEATURE.match(key)
    if match is None or match["drug"] == medication:
        return False
    return not _positive_or_negative(deltas.get(match["drug"], 0))


def _thresholds(explanation: Iterable[Mapping], *, has_regimen: bool) -> tuple[ThresholdRow, ...]:
    rows = []
    for item in explanation:
        if item.get("shap_mmhg") is not None or "threshold" not in item:
            continue
        feature = str(item.get("feature") or item.get("key") or "")
        if "adherence" in (feature + str(item.get("key", ""))).lower() and not has_regimen:
            continue
        unit = str(item.get("unit") or "")
        rows.append(
            ThresholdRow(
                feature=feature,
                value_text=feature_value_text(item.get("value"), unit),
                threshold_text=feature_value_text(item.get("threshold"), unit),
            )
        )
    return tuple(rows)


# --- numbers and words --------------------------------------------------------------------------


def signed_mmhg(value: float, *, always_sign: bool = True) -> str:
    """A value rounded to 0.1 with a real minus sign ("−3.8", "+0.4"); a whole number drops its
    ".0" when ``always_sign`` is off (the sentence: "−6"); zero has no sign."""
    rounded = round(float(value), 1)
    if rounded == 0:
        return "0.0" if always_sign else "0"
    text = f"{abs(rounded):.1f}"
    if not always_sign and text.endswith(".0"):
        text = text[:-2]
    return (MINUS if rounded < 0 else "+") + text


def feature_value_text(value: object, unit: str) -> str:
    if value is None or value == "":
        return "—"
    try:
        number = float(str(value))
    except ValueError:
        return f"{value} {unit}".strip()
    if unit == "fraction":
        return f"{number * 100:.0f}%"
    text = f"{number:.1f}".removesuffix(".0")
    text = text.replace("-", MINUS)
    return f"{text} {unit}".strip()


def reasons_in_words(
    reasons: Iterable[Mapping] | None, codes: Iterable[str] | None = None
) -> tuple[str, ...]:
    """Each reason's message; a reason with no message (or one that is just its code) gets the
    gate's words for the code. Older proposals carry only codes: those are put in words too. A
    raw code is never shown."""
    items: list[Mapping] = list(reasons or []) or [{"code": code} for code in codes or []]
    words = []
    for item in items:
        code = str(item.get("code") or "")
        message = str(item.get("message") or "").strip()
        if not message or message == code:
            message = REASON_TEXT.get(code) or _humanised(code)
        if message and message not in words:
            words.append(message)
    return tuple(words)


def _humanised(code: str) -> str:
    text = code.replace("_", " ").strip()
    return (text[:1].upper() + text[1:] + ".") if text else ""


def _positive(value: object) -> bool:
    try:
        return Decimal(str(value)) > 0
    except ArithmeticError:
        return False


def _positive_or_negative(value: object) -> bool:
    try:
        return Decimal(str(value)) != 0
    except ArithmeticError:
        return False
