"""The regimen as it stood at any moment, and the changes between moments — what feedback labels
are built from (``models_ml.dataset.database_training_set``).

A prescription is never edited: a dose change closes the open row (``ended_at``) and opens the
next (``patients.services.change_dose``), so the history of a patient's regimen is the set of
rows, and the regimen *in force* at a moment ``t`` is every row with ``started_at <= t`` and no
end or an end after ``t``. Reading the *current* prescriptions instead — what the first version
of the labels did — turns a real lisinopril 5 → 10 mg change into "no change" (the row after the
change is mistaken for the row before it).

A change is a moment where the regimen in force differs just before and just after. The changes
a clinician or a patient makes to several drugs at once are written one drug at a time, a few
milliseconds apart; moments closer than :data:`SAME_CHANGE` are one change. A regimen recorded
at enrolment (``source="import"``: what the patient already took) is not a change the product
made and gives no label.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

SAME_CHANGE = timedelta(minutes=1)
ENROLMENT_SOURCES = frozenset({"import"})


@dataclass(frozen=True)
class PrescriptionRow:
    medication: str
    dose_mg: Decimal
    started_at: datetime
    ended_at: datetime | None
    source: str


@dataclass(frozen=True)
class RegimenChange:
    """The regimen just before ``at`` and once the change was complete."""

    at: datetime
    before: dict[str, Decimal]
    after: dict[str, Decimal]
    sources: tuple[str, ...]

    @property
    def deltas(self) -> dict[str, Decimal]:
        drugs = set(self.before) | set(self.after)
        return {
            drug: self.after.get(drug, Decimal(0)) - self.before.get(drug, Decimal(0))
            for drug in sorted(drugs)
            if self.after.get(drug) != self.before.get(drug)
        }


def in_force(rows: Iterable[PrescriptionRow], moment: datetime) -> dict[str, Decimal]:
    """The regimen at ``moment``: what had started and had not yet ended."""
    return {
        row.medication: row.dose_mg
        for row in rows
        if row.started_at <= moment and (row.ended_at is None or row.ended_at > moment)
    }


def regimen_changes(rows: Iterable[PrescriptionRow]) -> list[RegimenChange]:
    """Every change of one patient's regimen, oldest first (see the module's docstring)."""
    rows = list(rows)
    events: list[tuple[datetime, str]] = []
    for row in rows:
        events.append((row.started_at, row.source))
        if row.ended_at is not None:
            events.append((row.ended_at, ""))  # a stop is the source of the closing write
    events.sort(key=lambda event: event[0])
    groups: list[list[tuple[datetime, str]]] = []
    for event in events:
        if groups and event[0] - groups[-1][-1][0] < SAME_CHANGE:
            groups[-1].append(event)
        else:
            groups.append([event])
    changes = []
    for group in groups:
        first, last = group[0][0], group[-1][0]
        before = in_force(rows, first - timedelta(microseconds=1))
        after = in_force(rows, last)
        if before == after:
            continue
        sources = tuple(sorted({source for _, source in group if source}))
        if sources and all(source in ENROLMENT_SOURCES for source in sources) and not before:
            continue  # the regimen the patient came with
        changes.append(RegimenChange(at=first, before=before, after=after, sources=sources))
    return changes
