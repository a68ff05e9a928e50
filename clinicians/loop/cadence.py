"""The visit cadence: how soon the next visit should be, from how stable the patient is.

A pure rule (no database) so that its cases can be read, and tested, one by one. The intervals
and their sources:

=================  ========  ===================================================================
reason             interval  source
=================  ========  ===================================================================
crisis             3 days    JNC 7 (Chobanian et al., JAMA 2003;289:2560, Table 3 "follow-up
                             based on initial BP"): ≥180/110 → "evaluate and treat immediately or
                             within 1 week depending on clinical situation". Local policy picks
                             3 days, inside that week: the home alert is already confirmed by a
                             repeat reading. A crisis with symptoms is an emergency, handled by
                             the alert, not by a visit.
hypotension        7 days    Local policy (no guideline interval): sustained low home BP on
                             treatment is reviewed for de-escalation within a week.
regimen_change     28 days   ACC/AHA 2017 (Whelton et al., Hypertension 2018;71:e13), section
                             8.3.1: after initiating or adjusting a regimen, follow-up "at monthly
                             intervals until control is achieved" (COR I, LOE B-R).
not_controlled     28 days   Same recommendation: monthly until control; also when too few home
                             readings exist to show control.
controlled         90 days   ACC/AHA 2017, Figure 4 and section 8.3.2: once at goal, reassess
                             every 3–6 months; we take the shorter end (3 months).
=================  ========  ===================================================================

Every interval counts from an *anchor* in the past, never from "today", so re-running the rule
daily gives the same date and does not push the visit away:

- routine reasons (``not_controlled``, ``controlled``) count from the last *completed* visit,
  else enrolment. A confirmed visit whose day passed without being completed (a no-show) does
  not reset the interval; the explanation says so.
- ``crisis`` and ``hypotension`` count from the later of the alert's opening and the last
  completed visit: a visit after the alert opened answers it, and if the alert is still
  unresolved the next urgent visit is due one interval after that visit.
- ``regimen_change`` counts from the change.

The earliest day wins. When an alert reason (crisis, hypotension) applies, it names the visit
even if a routine reason gives the earlier day (the day stays the earliest): a new alert always
changes the rule's answer, so it is never hidden behind a routine proposal a clinician declined.

The day the rule gives is the *nominal* due day (``nominal_due_on``); it identifies the
proposal (with the reason) and never moves while the patient's state is unchanged. A nominal
day before today is overdue: ``due_on`` becomes tomorrow — today's 09:00 proposal time may have
passed when the daily run happens, tomorrow's has not, so a clinician can confirm it as
proposed. A nominal day of today is not overdue and stays today.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

# Reasons raised by an open alert: when one applies, it names the visit (see ``next_visit``).
URGENT_REASONS = ("crisis", "hypotension")

# ACC/AHA 2017 section 8.3.1: a change of therapy counts as "recent" for one monthly cycle.
REGIMEN_CHANGE_WINDOW_DAYS = 28


@dataclass(frozen=True)
class CadenceRule:
    interval_days: int
    source: str


RULES: dict[str, CadenceRule] = {
    "crisis": CadenceRule(
        3, "JNC 7 (JAMA 2003;289:2560) Table 3: ≥180/110 → within 1 week; local policy 3 days"
    ),
    "hypotension": CadenceRule(7, "Local policy: review sustained hypotension within 1 week"),
    "regimen_change": CadenceRule(
        28, "ACC/AHA 2017 §8.3.1: monthly follow-up after starting or changing therapy"
    ),
    "not_controlled": CadenceRule(28, "ACC/AHA 2017 §8.3.1: monthly follow-up until control"),
    "controlled": CadenceRule(90, "ACC/AHA 2017 Figure 4, §8.3.2: every 3–6 months at goal"),
}


@dataclass(frozen=True)
class CadenceInputs:
    today: date
    # The last completed visit (or enrolment, without one): where routine intervals count.
    anchor_on: date
    target_systolic_mmhg: int
    target_diastolic_mmhg: int
    mean_systolic_7d_mmhg: float | None
    mean_diastolic_7d_mmhg: float | None
    bp_count_7d: int
    min_readings_7d: int
    crisis_opened_at: datetime | None = None
    hypotension_opened_at: datetime | None = None
    last_regimen_change_at: datetime | None = None
    # The last completed visit, if any (an urgent interval counts from it when it is later than
    # the alert's opening).
    last_visit_on: date | None = None
    # The latest confirmed visit after ``anchor_on`` whose day passed without being completed.
    unattended_visit_on: date | None = None


@dataclass(frozen=True)
class CadenceDecision:
    reason: str
    interval_days: int
    # The day to propose: ``nominal_due_on``, or tomorrow when that day has passed.
    due_on: date
    explanation: str
    source: str
    # The day the rule gives, before an overdue day is moved: with ``reason``, what identifies a
    # proposal (stable from day to day while nothing changes).
    nominal_due_on: date | None = None

    @property
    def is_overdue(self) -> bool:
        return self.nominal_due_on is not None and self.nominal_due_on < self.due_on

    @property
    def is_urgent(self) -> bool:
        return self.reason in URGENT_REASONS


def is_controlled(inputs: CadenceInputs) -> bool:
    """Home BP at goal: enough readings in 7 days, and the 7-day means below both targets
    (ACC/AHA 2017 writes the goal as "< 130/80"; the safety rule ``above_target`` agrees)."""
    return (
        inputs.bp_count_7d >= inputs.min_readings_7d
        and inputs.mean_systolic_7d_mmhg is not None
        and inputs.mean_diastolic_7d_mmhg is not None
        and inputs.mean_systolic_7d_mmhg < inputs.target_systolic_mmhg
        and inputs.mean_diastolic_7d_mmhg < inputs.target_diastolic_mmhg
    )


def next_visit(inputs: CadenceInputs) -> CadenceDecision:
    """Every rule that applies proposes a date; the earliest wins. If an alert rule (crisis,
    hypotension) applies, the visit carries the most urgent of them as its reason, on the
    earliest day of all."""
    candidates: list[tuple[date, str, str]] = []
    if inputs.crisis_opened_at is not None:
        candidates.append(
            (
                _due(_urgent_anchor(inputs.crisis_opened_at, inputs), "crisis"),
                "crisis",
                "Open hypertensive crisis alert: see the patient within days.",
            )
        )
    if inputs.hypotension_opened_at is not None:
        candidates.append(
            (
                _due(_urgent_anchor(inputs.hypotension_opened_at, inputs), "hypotension"),
                "hypotension",
                "Open sustained-hypotension alert: review the regimen within a week.",
            )
        )
    if inputs.last_regimen_change_at is not None:
        changed_on = inputs.last_regimen_change_at.date()
        if (inputs.today - changed_on).days <= REGIMEN_CHANGE_WINDOW_DAYS:
            candidates.append(
                (
                    _due(changed_on, "regimen_change"),
                    "regimen_change",
                    f"Regimen changed on {changed_on.isoformat()}: monthly follow-up until "
                    "control.",
                )
            )
    if is_controlled(inputs):
        candidates.append(
            (
                _due(inputs.anchor_on, "controlled"),
                "controlled",
                f"Home BP at goal (7-day mean {inputs.mean_systolic_7d_mmhg:.0f}/"
                f"{inputs.mean_diastolic_7d_mmhg:.0f} < {inputs.target_systolic_mmhg}/"
                f"{inputs.target_diastolic_mmhg} mmHg): routine visit in 3 months.",
            )
        )
    else:
        if inputs.bp_count_7d < inputs.min_readings_7d:
            why = (
                f"Only {inputs.bp_count_7d} home reading{'' if inputs.bp_count_7d == 1 else 's'}"
                f" in 7 days (fewer than "
                f"{inputs.min_readings_7d}): control is not shown; monthly follow-up."
            )
        else:
            why = (
                f"Home BP above goal (7-day mean {inputs.mean_systolic_7d_mmhg:.0f}/"
                f"{inputs.mean_diastolic_7d_mmhg:.0f}, target < {inputs.target_systolic_mmhg}/"
                f"{inputs.target_diastolic_mmhg} mmHg): monthly follow-up until control."
            )
        candidates.append((_due(inputs.anchor_on, "not_controlled"), "not_controlled", why))

    def rank(candidate: tuple[date, str, str]) -> tuple[date, int]:
        return candidate[0], _PRIORITY[candidate[1]]

    earliest = min(candidates, key=rank)
    urgent = [c for c in candidates if c[1] in URGENT_REASONS]
    if urgent:
        # An open alert names the visit even when a routine rule gives an earlier day (an
        # overdue one, say): the day stays the earliest, but a new alert changes the rule's
        # answer, so it is never hidden behind a routine proposal the clinician declined.
        _, reason, explanation = min(urgent, key=rank)
        nominal_due_on = earliest[0]
        if earliest[1] != reason:
            explanation = (
                f"{explanation} Brought forward to {nominal_due_on.isoformat()} by the "
                f"{earliest[1]} rule."
            )
    else:
        nominal_due_on, reason, explanation = earliest
    due_on = nominal_due_on
    if nominal_due_on < inputs.today:
        due_on = inputs.today + timedelta(days=1)
        # The nominal day, not "today", so the text is the same on every run.
        explanation = (
            f"{explanation} Overdue since {nominal_due_on.isoformat()}: as soon as possible."
        )
    if inputs.unattended_visit_on is not None:
        explanation = (
            f"{explanation} The confirmed visit of {inputs.unattended_visit_on.isoformat()} was "
            "not completed: the interval still counts from the last completed visit."
        )
    rule = RULES[reason]
    return CadenceDecision(
        reason,
        rule.interval_days,
        due_on,
        explanation[:300],
        rule.source,
        nominal_due_on=nominal_due_on,
    )


_PRIORITY = {name: index for index, name in enumerate(RULES)}


def _urgent_anchor(opened_at: datetime, inputs: CadenceInputs) -> date:
    """A crisis or hypotension interval counts from the alert's opening, or from a completed
    visit after it (the visit answered the alert; if it is still unresolved, see again)."""
    opened_on = opened_at.date()
    if inputs.last_visit_on is not None and inputs.last_visit_on > opened_on:
        return inputs.last_visit_on
    return opened_on


def _due(anchor: date, reason: str) -> date:
    return anchor + timedelta(days=RULES[reason].interval_days)
