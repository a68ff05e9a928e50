"""The antihypertensives the product titrates, with their labelled adult dose ranges.

Pure data (no Django), shared by ingestion (intake validation), the recommendation engine and
the FHIR facade. Dose ranges are the US prescribing-information adult hypertension ranges
(DailyMed labels for amlodipine besylate, lisinopril and hydrochlorothiazide tablets);
RxNorm ingredient codes from the NLM RxNorm browser.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

# Absolute: no automatic step larger than half the labelled maximum. That is the largest step
# between two adjacent marketed strengths of every drug we titrate (amlodipine 5→10, lisinopril
# 20→40, hydrochlorothiazide 25→50 mg; DailyMed labels, section 2): the labels titrate by at most
# a doubling, and a larger automatic jump would skip a strength.
MAX_AUTO_STEP_FRACTION_OF_LABEL_MAX = Decimal("0.5")


@dataclass(frozen=True)
class Medication:
    name: str
    drug_class: str
    rxnorm: str
    min_dose_mg: Decimal
    max_dose_mg: Decimal
    # Tablet strengths: a titration moves between these (labels list the marketed strengths).
    strengths_mg: tuple[Decimal, ...]

    @property
    def max_auto_step_mg(self) -> Decimal:
        """The absolute limit on one automatic step: half the labelled maximum
        (``MAX_AUTO_STEP_FRACTION_OF_LABEL_MAX``)."""
        return self.max_dose_mg * MAX_AUTO_STEP_FRACTION_OF_LABEL_MAX


FORMULARY: dict[str, Medication] = {
    medication.name: medication
    for medication in (
        Medication(
            "amlodipine",
            "calcium_channel_blocker",
            "17767",
            Decimal("2.5"),
            Decimal("10"),
            (Decimal("2.5"), Decimal("5"), Decimal("10")),
        ),
        Medication(
            # The hypertension range; 2.5 mg is for heart failure and renal impairment.
            "lisinopril",
            "ace_inhibitor",
            "29046",
            Decimal("5"),
            Decimal("40"),
            (Decimal("5"), Decimal("10"), Decimal("20"), Decimal("40")),
        ),
        Medication(
            "hydrochlorothiazide",
            "thiazide_diuretic",
            "5487",
            Decimal("12.5"),
            Decimal("50"),
            (Decimal("12.5"), Decimal("25"), Decimal("50")),
        ),
    )
}
