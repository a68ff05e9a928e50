"""The wearable: what it measures, when, and how it gets it wrong.

Each kind of error is a parameter of :class:`DeviceErrorModel`, so a test or a demo can turn it
off (``DeviceErrorModel.perfect()``) or exaggerate it. Random draws never depend on the
parameter values (only on array shapes), so two runs with the same seed that differ only in
device settings see the same physiology (common random numbers).

Outside ``artefacts_may_be_implausible`` mode every emitted value is physiologically plausible
(:data:`.parameters.PLAUSIBLE_SYSTOLIC_MMHG` etc., systolic > diastolic). In that mode, motion
artefacts produce values an ingestion validator must reject (out of range, diastolic >=
systolic); they are flagged ``is_artefact`` in the trace.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import parameters as p


@dataclass(frozen=True)
class DeviceErrorModel:
    """Measurement error of a cuffless BP watch and its upload path (defaults: see parameters)."""

    bias_sd_systolic_mmhg: float = p.DEVICE_BIAS_SD_SYSTOLIC_MMHG
    bias_sd_diastolic_mmhg: float = p.DEVICE_BIAS_SD_DIASTOLIC_MMHG
    noise_sd_systolic_mmhg: float = p.DEVICE_NOISE_SD_SYSTOLIC_MMHG
    noise_sd_diastolic_mmhg: float = p.DEVICE_NOISE_SD_DIASTOLIC_MMHG
    noise_sd_heart_rate_bpm: float = p.DEVICE_NOISE_SD_HEART_RATE_BPM
    motion_artefact_probability: float = p.MOTION_ARTEFACT_PROBABILITY
    gap_probability_per_day: float = p.GAP_PROBABILITY_PER_DAY
    missing_day_probability: float = p.MISSING_DAY_PROBABILITY
    duplicate_upload_probability: float = p.DUPLICATE_UPLOAD_PROBABILITY
    clock_offset_sd_seconds: float = p.CLOCK_OFFSET_SD_SECONDS
    clock_drift_sd_seconds_per_day: float = p.CLOCK_DRIFT_SD_SECONDS_PER_DAY
    artefacts_may_be_implausible: bool = False

    def __post_init__(self) -> None:
        for name in (
            "motion_artefact_probability",
            "gap_probability_per_day",
            "missing_day_probability",
            "duplicate_upload_probability",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability")
        for name in (
            "bias_sd_systolic_mmhg",
            "bias_sd_diastolic_mmhg",
            "noise_sd_systolic_mmhg",
            "noise_sd_diastolic_mmhg",
            "noise_sd_heart_rate_bpm",
            "clock_offset_sd_seconds",
            "clock_drift_sd_seconds_per_day",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")

    @classmethod
    def perfect(cls) -> DeviceErrorModel:
        """A device that records the true values (rounded), always, once, on time."""
        return cls(
            bias_sd_systolic_mmhg=0.0,
            bias_sd_diastolic_mmhg=0.0,
            noise_sd_systolic_mmhg=0.0,
            noise_sd_diastolic_mmhg=0.0,
            noise_sd_heart_rate_bpm=0.0,
            motion_artefact_probability=0.0,
            gap_probability_per_day=0.0,
            missing_day_probability=0.0,
            duplicate_upload_probability=0.0,
            clock_offset_sd_seconds=0.0,
            clock_drift_sd_seconds_per_day=0.0,
        )


@dataclass(frozen=True)
class ReadingCadence:
    """How many BP readings the watch takes per day. Heart rate and steps are hourly.

    BP reading times are uniformly random within the awake and the asleep part of the day
    (cuffless watches measure passively, including at night)."""

    bp_awake_per_day: int = 4
    bp_asleep_per_day: int = 2

    def __post_init__(self) -> None:
        if self.bp_awake_per_day < 0 or self.bp_asleep_per_day < 0:
            raise ValueError("reading counts must be >= 0")

    @property
    def bp_per_day(self) -> int:
        return self.bp_awake_per_day + self.bp_asleep_per_day


@dataclass(frozen=True)
class DeviceState:
    """Per-device constants drawn once per simulation: calibration bias and clock error."""

    bias_systolic_mmhg: np.ndarray  # (P,)
    bias_diastolic_mmhg: np.ndarray  # (P,)
    clock_offset_seconds: np.ndarray  # (P,)
    clock_drift_seconds_per_day: np.ndarray  # (P,)

    @classmethod
    def draw(cls, rng: np.random.Generator, model: DeviceErrorModel, n: int) -> DeviceState:
        standard = rng.standard_normal((4, n))
        return cls(
            bias_systolic_mmhg=standard[0] * model.bias_sd_systolic_mmhg,
            bias_diastolic_mmhg=standard[1] * model.bias_sd_diastolic_mmhg,
            clock_offset_seconds=standard[2] * model.clock_offset_sd_seconds,
            clock_drift_seconds_per_day=standard[3] * model.clock_drift_sd_seconds_per_day,
        )

    def clock_error_seconds(self, day: int) -> np.ndarray:
        error: np.ndarray = self.clock_offset_seconds + self.clock_drift_seconds_per_day * day
        return error


def artefact_probability(model: DeviceErrorModel, steps_in_hour: np.ndarray) -> np.ndarray:
    """Motion artefacts are more likely while walking: p * (1 + steps per hour / 1000)."""
    return np.minimum(1.0, model.motion_artefact_probability * (1.0 + steps_in_hour / 1000.0))


def measure_blood_pressure(
    rng: np.random.Generator,
    model: DeviceErrorModel,
    device: DeviceState,
    true_systolic_mmhg: np.ndarray,
    true_diastolic_mmhg: np.ndarray,
    steps_in_hour: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Measured (systolic, diastolic) as integers, and which readings are motion artefacts.

    Arrays are (P, K); device constants broadcast over K."""
    shape = true_systolic_mmhg.shape
    noise = rng.standard_normal((2, *shape))
    artefact_draw = rng.random(shape)
    artefact_error = rng.standard_normal((2, *shape))
    artefact_kind = rng.integers(0, 3, shape)
    implausible_draw = rng.random((2, *shape))

    systolic = (
        true_systolic_mmhg
        + device.bias_systolic_mmhg[:, None]
        + noise[0] * model.noise_sd_systolic_mmhg
    )
    diastolic = (
        true_diastolic_mmhg
        + device.bias_diastolic_mmhg[:, None]
        + noise[1] * model.noise_sd_diastolic_mmhg
    )
    is_artefact = artefact_draw < artefact_probability(model, steps_in_hour)
    systolic = systolic + is_artefact * (
        p.MOTION_ARTEFACT_SYSTOLIC_MEAN_MMHG + artefact_error[0] * p.MOTION_ARTEFACT_SD_MMHG
    )
    diastolic = diastolic + is_artefact * (
        p.MOTION_ARTEFACT_SYSTOLIC_MEAN_MMHG / 2 + artefact_error[1] * p.MOTION_ARTEFACT_SD_MMHG
    )
    systolic_int = np.clip(np.rint(systolic), *p.PLAUSIBLE_SYSTOLIC_MMHG).astype(np.int64)
    diastolic_int = np.clip(
        np.minimum(np.rint(diastolic), systolic_int - p.MIN_EMITTED_PULSE_PRESSURE_MMHG),
        *p.PLAUSIBLE_DIASTOLIC_MMHG,
    ).astype(np.int64)

    if model.artefacts_may_be_implausible:
        high, low = p.PLAUSIBLE_SYSTOLIC_MMHG[1], p.PLAUSIBLE_SYSTOLIC_MMHG[0]
        jitter = np.floor(implausible_draw * 30).astype(np.int64)
        too_high = is_artefact & (artefact_kind == 0)
        too_low = is_artefact & (artefact_kind == 1)
        inverted = is_artefact & (artefact_kind == 2)
        systolic_int = np.where(too_high, high + 1 + jitter[0], systolic_int)
        systolic_int = np.where(too_low, np.maximum(low - 1 - jitter[0], 1), systolic_int)
        diastolic_int = np.where(
            too_low,
            np.maximum(p.PLAUSIBLE_DIASTOLIC_MMHG[0] - 1 - jitter[1] // 3, 1),
            diastolic_int,
        )
        diastolic_int = np.where(inverted, systolic_int + 1 + jitter[1], diastolic_int)
    return systolic_int, diastolic_int, is_artefact


def measure_heart_rate(
    rng: np.random.Generator,
    model: DeviceErrorModel,
    true_heart_rate_bpm: np.ndarray,
    steps_in_hour: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Measured heart rate (integer /min) and artefact flags; artefacts lock onto step cadence."""
    shape = true_heart_rate_bpm.shape
    noise = rng.standard_normal(shape)
    artefact_draw = rng.random(shape)
    artefact_error = rng.standard_normal(shape)
    is_artefact = artefact_draw < artefact_probability(model, steps_in_hour)
    measured = (
        true_heart_rate_bpm
        + noise * model.noise_sd_heart_rate_bpm
        + is_artefact * (p.MOTION_ARTEFACT_HEART_RATE_MEAN_BPM + artefact_error * 10.0)
    )
    measured_int = np.clip(np.rint(measured), *p.PLAUSIBLE_HEART_RATE_BPM).astype(np.int64)
    if model.artefacts_may_be_implausible:
        measured_int = np.where(is_artefact, p.PLAUSIBLE_HEART_RATE_BPM[1] + 50, measured_int)
    return measured_int, is_artefact


@dataclass(frozen=True)
class RecordingWindow:
    """When the watch was worn and synced on one day: a whole missing day, or one gap."""

    is_missing_day: np.ndarray  # (P,)
    gap_start_hour: np.ndarray  # (P,) local clock; no gap is an empty interval
    gap_end_hour: np.ndarray  # (P,)

    @classmethod
    def draw(cls, rng: np.random.Generator, model: DeviceErrorModel, n: int) -> RecordingWindow:
        draws = rng.random((4, n))
        has_gap = draws[0] < model.gap_probability_per_day
        low, high = p.GAP_DURATION_HOURS_RANGE
        start = draws[1] * 24.0
        end = np.where(has_gap, start + low + draws[2] * (high - low), start)
        return cls(
            is_missing_day=draws[3] < model.missing_day_probability,
            gap_start_hour=start,
            gap_end_hour=end,
        )

    def is_recorded(self, hours: np.ndarray) -> np.ndarray:
        """(P, M) mask of the times (local hours of this day) at which a reading is kept."""
        in_gap = (hours >= self.gap_start_hour[:, None]) & (hours < self.gap_end_hour[:, None])
        return ~self.is_missing_day[:, None] & ~in_gap


def draw_duplicates(
    rng: np.random.Generator, model: DeviceErrorModel, shape: tuple[int, ...]
) -> np.ndarray:
    """Which readings the phone uploads twice (same client_id, same values)."""
    return rng.random(shape) < model.duplicate_upload_probability
