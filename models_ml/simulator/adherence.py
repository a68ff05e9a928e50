"""Adherence: whether the patient takes the day's doses.

A patient's ``adherence_rate`` is the long-run fraction of days on which all prescribed
once-daily doses are taken (doses are taken together, in the morning, or not at all: a
simplification). On Saturday and Sunday the probability is lower by
:data:`.parameters.WEEKEND_ADHERENCE_DIP_FRACTION` relative to weekdays ([informed] Vrijens et
al., BMJ 2008;336:1114), and the weekday probability is raised so that the weekly average is
still exactly ``adherence_rate``.
"""

from __future__ import annotations

import numpy as np

from . import parameters as p

WEEKEND_DAYS_PER_WEEK = 2
DAYS_PER_WEEK = 7


def intake_probabilities(
    adherence_rate: np.ndarray, weekend_dip_fraction: float = p.WEEKEND_ADHERENCE_DIP_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """(weekday, weekend) probability of taking the day's doses, averaging to the rate.

    If the weekday probability would exceed 1 it is capped at 1 and the weekend probability
    absorbs the rest, so the weekly mean stays ``adherence_rate`` and the weekend is still
    lower (unless the rate is 1)."""
    rate = np.clip(np.asarray(adherence_rate, dtype=float), 0.0, 1.0)
    weekend_share = WEEKEND_DAYS_PER_WEEK / DAYS_PER_WEEK
    weekday = np.minimum(1.0, rate / (1.0 - weekend_share * weekend_dip_fraction))
    weekdays_per_week = DAYS_PER_WEEK - WEEKEND_DAYS_PER_WEEK
    weekend = (DAYS_PER_WEEK * rate - weekdays_per_week * weekday) / WEEKEND_DAYS_PER_WEEK
    return weekday, np.clip(weekend, 0.0, 1.0)


def is_weekend(weekday_index: int) -> bool:
    """Monday = 0 ... Sunday = 6, as :meth:`datetime.date.weekday`."""
    return weekday_index >= DAYS_PER_WEEK - WEEKEND_DAYS_PER_WEEK
