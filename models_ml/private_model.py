"""The differentially private candidate: DP-SGD (Opacus) on the torch network, its privacy
ledger entries, and its registration (``models_ml.registry.register``). The trained network is
served behind the dose model's interface (``models_ml.torch_dose_model``) and loaded by
``models_ml.loaders``.

Two ledgers, both checked before any compute is spent (the run's noise, sampling rate and steps
are known from the target ε): the dataset's (``PrivacyLedgerEntry``: every run on the same
snapshot, composed) and each real patient's for life (``PatientPrivacySpend``: every private run
that trained on the patient, whatever its snapshot, composed by RDP with PLD beside it). A run
that would take any patient past :func:`patient_budget_epsilon` is refused; the check is made
again under lock when the run is recorded, in the registration's transaction.

Training on real patients is private unless an admin records a waiver
(:func:`nonprivate_waiver`). The utility cost of privacy is recorded with the model: the same
network trained without privacy for the same epochs, its held-out MAE beside the private one —
figures computed from real patients' rows without noise, so marked for the model owners only
(``metrics["visibility"]``, :func:`models_ml.privacy_record.public_metrics`).
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.models import Action
from audit.services import record_event
from models_ml.candidate import TrainingRefused, input_ranges, next_version, reference_sample
from models_ml.dataset import TrainingSet
from models_ml.dataset_store import data_dir, evaluation_set
from models_ml.gates import simulated_policy_outcomes
from models_ml.models import (
    DatasetSnapshot,
    ModelVersion,
    PatientPrivacySpend,
    PrivacyLedgerEntry,
)
from models_ml.privacy import (
    ACCOUNTANT_NAME,
    PatientBudgetExceeded,
    PatientSpend,
    PrivacyBudgetExceeded,
    PrivateRun,
    SpentRun,
    check_budget,
    check_patient_budgets,
    compose_patient_runs,
    plan_private_run,
    real_patient_keys,
    train_private,
)
from models_ml.privacy_record import metrics_visibility
from models_ml.registry import register
from models_ml.rules import WAIVE_PRIVACY, is_allowed_to_waive
from models_ml.torch_dose_model import MODEL_KIND, PrivateDoseModel
from models_ml.torch_model import Standardisation, train_nonprivate

DEFAULT_EPSILON = 3.0
EPOCHS = 20
# Expected patients per DP-SGD step (each brings all its rows, ~12): the privacy unit is the
# patient, so the sampling rate is this over the training patients.
PATIENTS_PER_STEP = 24
LEARNING_RATE = 3e-3
MAX_GRAD_NORM = 1.0
# Metrics computed from real patients' rows without noise (outside ε): for the model owners.
HELD_OUT_METRICS = (
    "held_out_mae_systolic_mmhg",
    "held_out_mae_diastolic_mmhg",
    "nonprivate_same_network_mae_systolic_mmhg",
    "utility_cost_mae_systolic_mmhg",
)
NONPRIVATE_BASELINE_METRICS = (
    "nonprivate_same_network_mae_systolic_mmhg",
    "utility_cost_mae_systolic_mmhg",
    "utility_cost_policy",
)
_CHUNK = 500  # patients per IN (...) query: under every backend's parameter limit


def _residual_quantiles(trained, rows: TrainingSet) -> tuple[float, float]:
    """10th and 90th percentiles of systolic residuals on ``rows``: the 80 % band around a
    prediction."""
    residuals = rows.targets[:, 0] - trained.predict(rows.features)[:, 0]
    return float(np.quantile(residuals, 0.1)), float(np.quantile(residuals, 0.9))


def _ledger_runs(dataset: DatasetSnapshot) -> list[PrivateRun]:
    """The dataset's earlier runs, all patient-level: a row-level run's cost per patient is
    unknown (a group of k rows), so the ledger refuses to compose with it."""
    entries = list(dataset.spend.all())
    other = sorted({entry.privacy_unit for entry in entries} - {"patient"})
    if other:
        raise ValueError(
            f"the privacy ledger of this dataset holds {', '.join(other)}-level runs, whose cost "
            "per patient is unknown; patient-level training cannot be composed with them. "
            "Train on a new dataset snapshot."
        )
    return [PrivateRun(entry.noise_multiplier, entry.sample_rate, entry.steps) for entry in entries]


# --- each real patient's lifetime ledger --------------------------------------------------------


def patient_budget_epsilon() -> float:
    """Each real patient's lifetime ε (``settings.PATIENT_PRIVACY_BUDGET_EPSILON``)."""
    return float(settings.PATIENT_PRIVACY_BUDGET_EPSILON)


def _chunks(keys: tuple[int, ...]):
    for start in range(0, len(keys), _CHUNK):
        yield keys[start : start + _CHUNK]


def _patient_histories(patient_keys: tuple[int, ...]) -> dict[int, list[SpentRun]]:
    """Every private run recorded against each patient, as (run, δ)."""
    histories: dict[int, list[SpentRun]] = {key: [] for key in patient_keys}
    for chunk in _chunks(patient_keys):
        for patient_id, noise, rate, steps, delta in PatientPrivacySpend.objects.filter(
            patient_id__in=chunk
        ).values_list("patient_id", "noise_multiplier", "sample_rate", "steps", "delta"):
            histories[patient_id].append((PrivateRun(noise, rate, steps), delta))
    return histories


def _require_patient_rows(patient_keys: tuple[int, ...], *, lock: bool = False) -> None:
    """Every ``db-<pk>`` must name a patient of this database: a spend the ledger cannot attach
    to a patient would be a spend nobody counts. ``lock`` holds the rows until the
    transaction ends, so that two runs cannot both pass the budget check for one patient."""
    from patients.models import Patient

    found = 0
    for chunk in _chunks(patient_keys):
        rows = Patient.objects.filter(pk__in=chunk)
        if lock:
            found += len(rows.select_for_update().values_list("pk", flat=True))
        else:
            found += rows.count()
    if found != len(patient_keys):
        raise TrainingRefused(
            f"{len(patient_keys) - found} of the {len(patient_keys)} real patients in the "
            "training data are not in the database: their privacy spend could not be recorded."
        )


def check_patient_ledger(
    patient_keys: tuple[int, ...], run: PrivateRun, delta: float, *, with_pld: bool = False
) -> dict[int, PatientSpend]:
    """Each patient's lifetime spend once ``run`` is added, or :class:`TrainingRefused` naming
    how many patients it would take past the budget and the worst ε."""
    try:
        return check_patient_budgets(
            _patient_histories(patient_keys),
            run,
            delta,
            patient_budget_epsilon(),
            with_pld=with_pld,
        )
    except PatientBudgetExceeded as error:
        raise TrainingRefused(str(error)) from error


def _ledger_summary(spends: dict[int, PatientSpend]) -> dict:
    """What the model's privacy record says of the patient ledger after this run."""
    pld = [spend.epsilon_pld for spend in spends.values()]
    return {
        "real_patients": len(spends),
        "budget_epsilon": patient_budget_epsilon(),
        "max_cumulative_epsilon_rdp": max((s.epsilon_rdp for s in spends.values()), default=0.0),
        "max_cumulative_epsilon_pld": (
            None if None in pld else max((value for value in pld if value is not None), default=0.0)
        ),
        "max_runs_per_patient": max((s.runs for s in spends.values()), default=0),
        "accountant": ACCOUNTANT_NAME,
    }


def _write_patient_spend(
    model_version: ModelVersion, spends: dict[int, PatientSpend], run: PrivateRun, actor
) -> None:
    """One ``PatientPrivacySpend`` per real patient trained on, and one audit event naming them
    all, inside the registration's transaction. A row's δ is the patient's ledger δ (the
    smallest of their runs' so far); its ε (this run alone) and cumulative ε are stated at it."""
    if not spends:
        return
    PatientPrivacySpend.objects.bulk_create(
        [
            PatientPrivacySpend(
                patient_id=patient_id,
                model_version=model_version,
                noise_multiplier=run.noise_multiplier,
                sample_rate=run.sample_rate,
                steps=run.steps,
                delta=spend.delta,
                epsilon=run.epsilon(spend.delta),
                cumulative_epsilon_rdp=spend.epsilon_rdp,
                cumulative_epsilon_pld=spend.epsilon_pld,
            )
            for patient_id, spend in spends.items()
        ],
        batch_size=_CHUNK,
    )
    summary = _ledger_summary(spends)
    record_event(
        action=Action.PATIENT_PRIVACY_SPENT,
        actor=actor,
        object_type="model_version",
        object_id=model_version.pk,
        patient_ids=sorted(spends),
        component="" if actor else "models_ml.train",
        detail={
            "version": model_version.version,
            "patients": len(spends),
            "max_cumulative_epsilon_rdp": summary["max_cumulative_epsilon_rdp"],
            "budget_epsilon": summary["budget_epsilon"],
        },
    )


def patient_privacy(patient) -> dict:
    """A real patient's privacy spend for life, for other parts to show (model card, patient
    record, admin): every private training that trained on them, their composed ε (RDP, by which
    the budget is judged; PLD beside it, tighter), the budget and what remains."""
    rows = list(
        PatientPrivacySpend.objects.filter(patient=patient)
        .select_related("model_version")
        .order_by("created_at", "pk")
    )
    budget = patient_budget_epsilon()
    spend = (  # PLD: the latest row's, composed over all of them when it was written
        compose_patient_runs(
            [(PrivateRun(r.noise_multiplier, r.sample_rate, r.steps), r.delta) for r in rows],
            with_pld=False,
        )
        if rows
        else None
    )
    spent = spend.epsilon_rdp if spend else 0.0
    return {
        "patient": patient.pk,
        "runs": [
            {
                "model_version": row.model_version.version,
                "trained_at": row.created_at.isoformat(),
                "noise_multiplier": row.noise_multiplier,
                "sample_rate": row.sample_rate,
                "steps": row.steps,
                "delta": row.delta,
                "epsilon": row.epsilon,
                "cumulative_epsilon_rdp": row.cumulative_epsilon_rdp,
            }
            for row in rows
        ],
        "cumulative_epsilon_rdp": spent,
        "cumulative_epsilon_pld": rows[-1].cumulative_epsilon_pld if rows else 0.0,
        "delta": spend.delta if spend else None,
        "budget_epsilon": budget,
        "remaining_epsilon": max(0.0, budget - spent),
        "accountant": ACCOUNTANT_NAME,
    }


def nonprivate_waiver(patient_keys: tuple[int, ...], reason: str, actor) -> dict:
    """The waiver record that lets a model train without DP on ``patient_keys`` real patients:
    an admin's written reason (``models_ml.waive_privacy``). Anything less is refused, and the
    refusal journalled."""
    reason = reason.strip()
    problem = ""
    if not reason:
        problem = "no waiver was given"
    elif not is_allowed_to_waive(actor, WAIVE_PRIVACY):
        problem = "only a model owner may waive differential privacy"
    if problem:
        with transaction.atomic():
            record_event(
                action=Action.NONPRIVATE_TRAINING_REFUSED,
                actor=actor,
                outcome="failure",
                component="" if actor else "models_ml.train",
                detail={"real_patients": len(patient_keys), "problem": problem},
            )
        raise TrainingRefused(
            f"Training without differential privacy on {len(patient_keys)} real patients is "
            f"refused: {problem}. Train with --private, or an admin records a waiver "
            '(--non-private-waiver "reason").'
        )
    return {
        "reason": reason,
        "by": actor.get_username(),
        "by_id": actor.pk,
        "recorded_at": timezone.now().isoformat(),
    }


def train_private_candidate(
    *,
    training: TrainingSet,
    train: TrainingSet,
    held_out: TrainingSet,
    dataset: DatasetSnapshot,
    epsilon: float | None,
    seed: int,
    actor=None,
) -> ModelVersion:
    """Train, save and register a private candidate on ``train``; both ledgers are checked before
    training and written with the registration. Refuses (``TrainingRefused``) a dataset or a
    patient budget overrun, δ above 1/U, or real patients missing from the database."""
    target = DEFAULT_EPSILON if epsilon is None else float(epsilon)
    delta = dataset.delta
    n_patients = len(np.unique(train.patient_ids))
    batch_size = min(PATIENTS_PER_STEP, n_patients)
    # Held-out patients are not trained on: they spend nothing (their rows feed the owners'
    # metrics only, see HELD_OUT_METRICS).
    trained_on = real_patient_keys(train.patient_ids)
    try:
        earlier = _ledger_runs(dataset)
        run = plan_private_run(
            n_records=n_patients,
            batch_size=batch_size,
            epochs=EPOCHS,
            target_epsilon=target,
            delta=delta,
        )
        cumulative = check_budget(
            earlier, run, dataset.privacy_budget_epsilon, delta, n_records=n_patients
        )
    except PrivacyBudgetExceeded as error:
        raise TrainingRefused(str(error)) from error
    except ValueError as error:  # δ above 1/N, an unreachable ε, a ledger of another unit
        raise TrainingRefused(str(error)) from error
    _require_patient_rows(real_patient_keys(training.patient_ids))
    check_patient_ledger(trained_on, run, delta)
    # Everything the artifact and the served interval carry comes from ε or from the public
    # simulated evaluation cohort: the standardisation, the 80 % band, the drift reference.
    public = evaluation_set()
    trained = train_private(
        train.features,
        train.targets,
        units=train.patient_ids,
        epochs=EPOCHS,
        batch_size=batch_size,
        lr=LEARNING_RATE,
        seed=seed,
        noise_multiplier=run.noise_multiplier,
        max_grad_norm=MAX_GRAD_NORM,
        delta=delta,
        standardisation=Standardisation.fit(public.features, public.targets),
    )
    privacy_figures = trained.privacy
    if privacy_figures is None:  # train_private always accounts for its run
        raise TrainingRefused("the private training returned no privacy accounting")
    baseline = train_nonprivate(  # same network, epochs and rows per step, without privacy
        train.features,
        train.targets,
        epochs=EPOCHS,
        batch_size=max(1, round(len(train) * run.sample_rate)),
        lr=LEARNING_RATE,
        seed=seed,
    )
    # The comparison figures (held-out MAE, the non-private network's MAE and policy outcomes)
    # are computed from the training data without noise: outside ε, so when real patients are
    # among those rows they are marked for the model owners (metrics["visibility"]) and never
    # shown to patients or clinicians.
    private_mae = np.abs(trained.predict(held_out.features) - held_out.targets).mean(axis=0)
    baseline_mae = np.abs(baseline.predict(held_out.features) - held_out.targets).mean(axis=0)
    version = next_version("dose-dp")
    quantiles = _residual_quantiles(trained, public)
    # The utility cost in what patients would live through, not only in MAE: both networks'
    # policies on the simulated cohort the policy gate uses.
    policy_cost = {
        "private": simulated_policy_outcomes(PrivateDoseModel(trained, quantiles), version),
        "nonprivate_same_network": simulated_policy_outcomes(
            PrivateDoseModel(baseline, _residual_quantiles(baseline, public)), f"{version}-np"
        ),
    }
    metrics = {
        "train_rows": len(train),
        "train_patients": n_patients,
        "held_out_rows": len(held_out),
        "held_out_mae_systolic_mmhg": float(private_mae[0]),
        "held_out_mae_diastolic_mmhg": float(private_mae[1]),
        "nonprivate_same_network_mae_systolic_mmhg": float(baseline_mae[0]),
        "utility_cost_mae_systolic_mmhg": float(private_mae[0] - baseline_mae[0]),
        "utility_cost_policy": policy_cost,
        "training_seconds_private": trained.training_seconds,
        "training_seconds_nonprivate": baseline.training_seconds,
    }
    metrics["visibility"] = metrics_visibility(
        metrics,
        model_owners=(
            (HELD_OUT_METRICS if real_patient_keys(held_out.patient_ids) else ())
            + (NONPRIVATE_BASELINE_METRICS if trained_on else ())
        ),
    )
    path = data_dir("models") / f"{version}.pt"
    sha256 = trained.save(path)
    figures = asdict(privacy_figures)
    try:
        with transaction.atomic():
            # Again under lock: a run recorded since the check above counts too.
            _require_patient_rows(trained_on, lock=True)
            spends = check_patient_ledger(trained_on, run, delta, with_pld=True)
            model_version = register(
                version=version,
                kind=MODEL_KIND,
                path=path,
                sha256=sha256,
                dataset=dataset,
                parameters={
                    "epochs": EPOCHS,
                    "expected_patients_per_step": batch_size,
                    "lr": LEARNING_RATE,
                    "max_grad_norm": MAX_GRAD_NORM,
                    "seed": seed,
                    "hidden": [32, 32],
                    "residual_quantiles": quantiles,
                },
                metrics=metrics,
                # The drift reference comes from the public evaluation cohort: a private
                # model's training rows must not leave the training run.
                reference=reference_sample(public.features, trained.predict(public.features)[:, 0]),
                # From the public reference, not the private rows: a range is an exact statistic.
                input_ranges=input_ranges(public.features),
                privacy={
                    "private": True,
                    **figures,
                    "cumulative_epsilon": cumulative,
                    "budget_epsilon": dataset.privacy_budget_epsilon,
                    "patient_ledger": _ledger_summary(spends),
                },
                actor=actor,
            )
            PrivacyLedgerEntry.objects.create(
                dataset=dataset,
                model_version=model_version,
                noise_multiplier=run.noise_multiplier,
                sample_rate=run.sample_rate,
                steps=run.steps,
                epsilon=figures["epsilon"],
                cumulative_epsilon=cumulative,
                delta=delta,
                privacy_unit=privacy_figures.privacy_unit,
            )
            _write_patient_spend(model_version, spends, run, actor)
    except TrainingRefused:
        path.unlink(missing_ok=True)  # an artifact nobody may use releases nothing
        raise
    return model_version
