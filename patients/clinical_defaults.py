"""Clinical defaults, each stated once with its source.

The safety rules (``clinicians.safety``), the course rules (``patients.course``), the protocol
(``models_ml.protocol``), the alert-threshold rows (``clinicians.models.AlertThresholds``) and the
simulator's outcome measures (``models_ml.simulator``) all read their defaults from here, so a
change of guideline is one edit. A clinician adjusts the per-patient values within the hard limits
of ``clinicians.safety.HARD_LIMITS``; these are only where a patient starts. No Django here.
"""

from __future__ import annotations

from typing import Final

# Target home blood pressure: < 130/80 mmHg for most adults with hypertension (ACC/AHA 2017,
# Whelton et al., Hypertension 2018;71:e13, section 8.1.5).
TARGET_SYSTOLIC_MMHG: Final[int] = 130
TARGET_DIASTOLIC_MMHG: Final[int] = 80

# Hypertensive crisis: systolic >= 180 or diastolic >= 120 mmHg (ACC/AHA 2017, section 11.2;
# the guideline says "> 180 and/or > 120", we alert at the boundary as well: fail towards care).
CRISIS_SYSTOLIC_MMHG: Final[int] = 180
CRISIS_DIASTOLIC_MMHG: Final[int] = 120

# Hypotension: systolic < 90 mmHg, the conventional threshold (ESC 2018 syncope guideline).
HYPOTENSION_SYSTOLIC_MMHG: Final[int] = 90

# Stale data: no blood pressure for 48 h (home telemonitoring trials ask for daily readings,
# e.g. TASMINH4, McManus et al., Lancet 2018;391:949).
STALE_AFTER_HOURS: Final[int] = 48

# Minimum interval between dose changes. ACC/AHA 2017 section 8.3.1 (titrate monthly until
# control) and ESH 2023 (Mancia et al., J Hypertens 2023;41:1874, section 17: reassess 2–4 weeks
# after a change) — 14 days is the short end of "2–4 weeks", also the simulator's decision cadence.
MIN_INTERVAL_DAYS: Final[int] = 14
