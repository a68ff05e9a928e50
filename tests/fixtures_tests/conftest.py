"""Where the fixtures are, and the clock they were written for."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"
OMRON_EXPORT = FIXTURES / "home_monitor" / "omron_connect.csv"
# The fixtures' readings span 26 Oct – 8 Nov 2026 (America/New_York). The ingestion refuses
# readings from the future and more than a year old, so the tests run the day after the last.
THE_DAY_AFTER = datetime(2026, 11, 9, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def fixture_clock():
    with time_machine.travel(THE_DAY_AFTER, tick=True):
        yield THE_DAY_AFTER


def fixture_text(relative: str) -> str:
    return (FIXTURES / relative).read_text(encoding="utf-8")


def fhir_fixture(relative: str, patient) -> dict[str, Any]:
    """A FHIR fixture with its ``{patient_id}`` placeholders naming ``patient``."""
    return json.loads(fixture_text(relative).replace("{patient_id}", str(patient.pk)))


@pytest.fixture
def cuff_owner(patient_a):
    """The patient whose cuff the OMRON export is from: living in New York."""
    patient_a.time_zone = "America/New_York"
    patient_a.save(update_fields=["time_zone"])
    return patient_a
