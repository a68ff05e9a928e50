"""Training sets for the dose-response model, with a content hash for lineage.

Two sources, one feature function (``models_ml.features.home_features``):

* **Simulated outcomes.** A cohort from the in-silico simulator is followed under an exploration
  policy (random one-step titrations, as a clinic's varied practice would produce); each
  decision day gives a row — the 7-day features before it and the candidate regimen — labelled
  with the change of the *measured* home-BP mean from the 7 days before to days 7–13 after.
* **Real outcomes in the database.** Every dose change the product made (a patient's
  acknowledgement or a clinician's approval or modification) with readings before and after
  becomes a row the same way. Rejected proposals change no dose and so carry no outcome label;
  they feed the override-rate monitor instead.

Demographics ride along for fairness audits; they are not model inputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

import numpy as np
import pandas as pd

from models_ml.features import DRUGS, FEATURE_NAMES, features_from_simulated_state, model_row
from models_ml.simulator import DRUGS as SIM_DRUGS
from models_ml.simulator import VirtualPatient, generate_cohort, run_policy

OUTCOME_WINDOW_DAYS = (7, 14)  # days after the change whose mean is the outcome
MIN_OUTCOME_READINGS = 3
DEMOGRAPHIC_COLUMNS = ("age_years", "sex", "race", "ethnicity")


@dataclass
class TrainingSet:
    features: np.ndarray  # (n, len(FEATURE_NAMES))
    targets: np.ndarray  # (n, 2): change of systolic, diastolic (mmHg)
    patient_ids: np.ndarray  # (n,) for patient-level splits
    demographics: pd.DataFrame  # age_years, sex, race, ethnicity per row
    source: dict = field(default_factory=dict)
    feature_names: tuple[str, ...] = FEATURE_NAMES

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def content_hash(self) -> str:
        digest = hashlib.sha256()
        digest.update(",".join(self.feature_names).encode())
        digest.update(np.ascontiguousarray(self.features, dtype="<f8").tobytes())
        digest.update(np.ascontiguousarray(self.targets, dtype="<f8").tobytes())
        digest.update("\n".join(map(str, self.patient_ids)).encode())
        return digest.hexdigest()

    def split_by_patient(
        self, held_out_fraction: float, seed: int | None = None, *, salt: bytes | None = None
    ) -> tuple[TrainingSet, TrainingSet]:
        """Held-out *patients* (not rows): a patient's rows never straddle train and test.

        A patient is held out when HMAC-SHA256(salt, patient id) mod 10,000 falls below
        ``held_out_fraction`` × 10,000: a property of the patient alone, so adding or removing a
        patient moves no one else (the seeded draw of k patients it replaces moved 87–125 when
        one joined or left; issue #11), and a real patient stays on the same side — trained on
        (spending privacy) or held out — from run to run. The held-out share is
        ``held_out_fraction`` on average, not exactly. The salt is the deployment's:
        ``held_out_split.salt`` in the data directory, generated once (keep it with the
        database; a new salt re-draws every patient). ``seed`` is ignored (kept for callers): a
        split that changed per run would, over runs, train on every patient.
        """
        import hmac
        import os
        import secrets
        from pathlib import Path

        if not 0 < held_out_fraction < 1:
            raise ValueError(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
        from django.conf import settings

        configured = getattr(settings, "HELD_OUT_SPLIT_SALT", "")
        if salt is None and configured:  # fixed by the deployment (or the test suite)
            salt = configured.encode()
        if salt is None:
            path = Path(settings.DATA_DIR) / "held_out_split.salt"
            if not path.exists():  # write aside, then link: a concurrent first use keeps one
                spare = path.with_name(f"{path.name}.{secrets.token_hex(8)}")
                with os.fdopen(
                    os.open(spare, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w"
                ) as f:
                    f.write(secrets.token_hex(32))
                try:
                    os.link(spare, path)
                except FileExistsError:
                    pass
                finally:
                    spare.unlink()
            salt = bytes.fromhex(path.read_text().strip())
        threshold = round(held_out_fraction * 10_000)
        held = {
            patient_id
            for patient_id in {str(value) for value in self.patient_ids}
            if int.from_bytes(
                hmac.new(salt, patient_id.encode(), hashlib.sha256).digest()[:8], "big"
            )
            % 10_000
            < threshold
        }
        mask = np.array([str(pid) in held for pid in self.patient_ids], dtype=bool)
        return self.subset(~mask), self.subset(mask)

    def subset(self, mask: np.ndarray) -> TrainingSet:
        return TrainingSet(
            self.features[mask],
            self.targets[mask],
            self.patient_ids[mask],
            self.demographics[mask].reset_index(drop=True),
            dict(self.source),
            self.feature_names,
        )

    @classmethod
    def concatenate(cls, parts: list[TrainingSet]) -> TrainingSet:
        parts = [p for p in parts if len(p)]
        if not parts:
            return empty_training_set()
        return cls(
            np.concatenate([p.features for p in parts]),
            np.concatenate([p.targets for p in parts]),
            np.concatenate([p.patient_ids for p in parts]),
            pd.concat([p.demographics for p in parts], ignore_index=True),
            {"parts": [p.source for p in parts]},
        )


def empty_training_set() -> TrainingSet:
    return TrainingSet(
        np.zeros((0, len(FEATURE_NAMES))),
        np.zeros((0, 2)),
        np.zeros(0, dtype=object),
        pd.DataFrame(columns=list(DEMOGRAPHIC_COLUMNS)),
    )


def exploration_policy(seed: int, hold_probability: float = 0.3) -> Callable:
    """Random one-step titrations within the labelled ranges (the simulator's drug table)."""
    rng = np.random.default_rng(seed)

    def policy(state):
        regimen = {name: Decimal(dose) for name, dose in state.regimen.items()}
        if rng.random() < hold_probability:
            return regimen
        options = []
        for name in DRUGS:
            steps = list(SIM_DRUGS[name].titration_steps_mg)
            if name in regimen:
                index = steps.index(regimen[name]) if regimen[name] in steps else 0
                if index + 1 < len(steps):
                    options.append((name, steps[index + 1]))
                options.append((name, steps[index - 1] if index > 0 else Decimal("0")))
            else:
                options.append((name, steps[0]))
        name, dose = options[rng.integers(len(options))]
        if dose == 0:
            regimen.pop(name, None)
        else:
            regimen[name] = dose
        return regimen

    return policy


def measured_bp(trace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A simulator trace's measured systolic and diastolic readings (patients × days × slots)
    and which of them a home series would keep: recorded, not an artefact, plausible."""
    systolic = trace.stacked("bp_measured_systolic_mmhg").astype(float)
    diastolic = trace.stacked("bp_measured_diastolic_mmhg").astype(float)
    valid = (
        trace.stacked("bp_is_recorded")
        & ~trace.stacked("bp_is_artefact")
        & (systolic > diastolic)
        & (systolic >= 50)
        & (systolic <= 300)
    )
    return systolic, diastolic, valid


def simulated_training_set(
    *,
    n_patients: int = 600,
    days: int = 182,
    seed: int = 7,
    interval_days: int = 14,
    include: Callable[[VirtualPatient], bool] | None = None,
) -> TrainingSet:
    """Rows from a simulated cohort (``include`` filters patients, e.g. to build a skewed one)."""
    cohort = [p for p in generate_cohort(n_patients, seed=seed) if include is None or include(p)]
    decisions: list[tuple[int, int, dict[str, float], dict, dict]] = []
    explore = exploration_policy(seed + 1)
    index = {patient.patient_id: i for i, patient in enumerate(cohort)}

    def recording_policy(state):
        new = explore(state)
        decisions.append(
            (
                index[state.patient_id],
                state.day,
                features_from_simulated_state(state),
                dict(state.regimen),
                new,
            )
        )
        return new

    result = run_policy(
        cohort, recording_policy, days=days, seed=seed, interval_days=interval_days, keep_trace=True
    )
    trace = result.trace
    assert trace is not None
    systolic, diastolic, valid = measured_bp(trace)  # (P, D, K) each
    rows, targets, pids, demo = [], [], [], []
    first, last = OUTCOME_WINDOW_DAYS
    for i, day, features, _old, new in decisions:
        if day + last > days or features["bp_count_7d"] < MIN_OUTCOME_READINGS:
            continue
        mask = valid[i, day + first : day + last]
        if mask.sum() < MIN_OUTCOME_READINGS:
            continue
        after_sys = systolic[i, day + first : day + last][mask].mean()
        after_dia = diastolic[i, day + first : day + last][mask].mean()
        rows.append(model_row(features, new))
        targets.append(
            (after_sys - features["mean_systolic_7d"], after_dia - features["mean_diastolic_7d"])
        )
        patient = cohort[i]
        pids.append(patient.patient_id)
        demo.append(
            (
                patient.demographics.age_years,
                patient.demographics.sex,
                patient.demographics.race,
                patient.demographics.ethnicity,
            )
        )
    return TrainingSet(
        np.asarray(rows, dtype=float).reshape(-1, len(FEATURE_NAMES)),
        np.asarray(targets, dtype=float).reshape(-1, 2),
        np.asarray(pids, dtype=object),
        pd.DataFrame(demo, columns=list(DEMOGRAPHIC_COLUMNS)),
        {
            "kind": "simulator",
            "n_patients": len(cohort),
            "days": days,
            "seed": seed,
            "interval_days": interval_days,
            "start_date": date(2026, 1, 5).isoformat(),
        },
    )


def database_training_set() -> TrainingSet:
    """Rows from the regimen changes recorded in the database, with their measured outcomes.

    Each change (``models_ml.history.regimen_changes``: a start, a stop or a new dose, whoever
    made it — a patient acknowledging a proposal, a clinician's decision or order) gives one
    row: the features observed just before it *as they stood then* (readings, intakes and the
    regimen in force — as-of, not current), the regimen it moved to, and the change of the home
    blood-pressure mean from the 7 days before to days 7–13 after. A change whose outcome window
    a later change overlaps is left out: its outcome belongs to two regimens."""
    from datetime import timedelta

    from models_ml.features import observe
    from models_ml.history import PrescriptionRow, regimen_changes
    from patients.models import Patient, Prescription, Reading, ReadingType

    first, last = OUTCOME_WINDOW_DAYS
    rows, targets, pids, demo = [], [], [], []
    skipped = {"too_few_readings_before": 0, "too_few_readings_after": 0, "overlapping": 0}
    history: dict[int, list[PrescriptionRow]] = {}
    prescription_rows = Prescription.objects.order_by("started_at", "pk").values_list(
        "patient_id", "medication", "dose_mg", "started_at", "ended_at", "source"
    )
    for patient_id, medication, dose_mg, started_at, ended_at, source in prescription_rows:
        history.setdefault(patient_id, []).append(
            PrescriptionRow(medication, dose_mg, started_at, ended_at, source)
        )
    patients = Patient.objects.in_bulk(list(history))
    for patient_id, prescriptions in sorted(history.items()):
        patient = patients[patient_id]
        changes = regimen_changes(prescriptions)
        for index, change in enumerate(changes):
            window = (change.at + timedelta(days=first), change.at + timedelta(days=last))
            if index + 1 < len(changes) and changes[index + 1].at < window[1]:
                skipped["overlapping"] += 1
                continue
            before = observe(patient, change.at - timedelta(microseconds=1))
            if before.bp_count_7d < MIN_OUTCOME_READINGS:
                skipped["too_few_readings_before"] += 1
                continue
            outcome = (
                Reading.objects.in_use()
                .filter(
                    patient_id=patient_id,
                    reading_type=ReadingType.BLOOD_PRESSURE,
                    measured_at__gte=window[0],
                    measured_at__lt=window[1],
                )
                .values_list("systolic_mmhg", "diastolic_mmhg")
            )
            values = np.asarray(list(outcome), dtype=float)
            if len(values) < MIN_OUTCOME_READINGS:
                skipped["too_few_readings_after"] += 1
                continue
            rows.append(model_row(before.features, change.after))
            targets.append(
                (
                    values[:, 0].mean() - before.features["mean_systolic_7d"],
                    values[:, 1].mean() - before.features["mean_diastolic_7d"],
                )
            )
            pids.append(f"db-{patient_id}")
            demo.append(
                (
                    change.at.year - patient.birth_year,
                    patient.sex,
                    patient.race,
                    patient.ethnicity,
                )
            )
    return TrainingSet(
        np.asarray(rows, dtype=float).reshape(-1, len(FEATURE_NAMES)),
        np.asarray(targets, dtype=float).reshape(-1, 2),
        np.asarray(pids, dtype=object),
        pd.DataFrame(demo, columns=list(DEMOGRAPHIC_COLUMNS)),
        {"kind": "database", "rows": len(rows), "skipped": skipped},
    )
