"""The model card of a model version, generated from its record (issue: model lifecycle
integrity) — what a clinician reading a proposal, or a hospital reviewing the product, needs to
know about the model that made it: what it is for and for whom it is not, what it learnt from,
how it was judged (in simulation, and what that cannot show), how it does by subgroup, what
privacy it spent, what it was built with and which inputs it has seen.

Everything comes from the stored record (``ModelVersion`` and its dataset snapshot) — nothing is
written by hand per version, so a card cannot drift from the model. Two audiences: ``clinician``
(the portal's review card, the API for clinicians) and ``owner`` (admins, model owners). Figures
computed on private patients' data (a private model's held-out metrics, see
``models_ml.private_model``) are shown to owners only: publishing them would spend privacy the
ledger does not count.

Sections follow Mitchell et al., "Model Cards for Model Reporting" (FAT* 2019), adapted to a
dose-titration model: intended use, out of scope, training data, evaluation, subgroups, fairness,
privacy, software, input ranges, change control.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from core.errors import NotFound
from models_ml.dataset_store import load_training_set
from models_ml.models import ModelVersion, Stage
from models_ml.privacy_record import is_private_record, public_metrics

CARD_VERSION = 1
AUDIENCES = ("clinician", "owner")

INTENDED_USE = (
    "Proposes one-step changes of amlodipine, lisinopril or hydrochlorothiazide (start, dose "
    "up, dose down, stop) for adults with primary hypertension who measure their blood "
    "pressure at home, from the 7-day home readings, adherence log, heart rate, activity and "
    "current regimen. Every proposal passes the clinician-set safety bounds and the "
    "treatment-course rules; a change outside them waits for a clinician. It supports, and does "
    "not replace, the clinician's judgement."
)
OUT_OF_SCOPE = (
    "Children and adolescents (under 18).",
    "Pregnancy or planned pregnancy (lisinopril is contraindicated).",
    "Chronic kidney disease with eGFR under 30 mL/min/1.73 m² (changes are blocked).",
    "Heart failure, recent myocardial infarction or stroke: other drug classes and targets apply.",
    "Secondary hypertension, hypertensive urgency or emergency (crisis readings raise an alert "
    "and block proposals).",
    "Patients on antihypertensive classes the model does not know (beta blockers, ARBs, "
    "calcium-channel blockers other than amlodipine, mineralocorticoid antagonists, loop "
    "diuretics): their effect is not in the model's inputs.",
)
EVALUATION_LIMITS = (
    "Judged in simulation only: the held-out error and the policy outcomes come from the "
    "project's in-silico cohort (models_ml.simulator), whose drug effects follow published "
    "dose-response meta-analyses, not from outcomes of real patients.",
    "The simulator has no comorbidities, drug interactions or side effects other than "
    "hypotension, and its adherence and measurement models are simplified.",
    "Real outcomes are watched after deployment by the outcome monitor (predicted against "
    "observed change of the home mean 7–13 days after each change).",
)
CHANGE_CONTROL = "docs/change-control.md"


@lru_cache(maxsize=16)
def _make_up(content_hash: str) -> dict | None:
    """Who the training data came from: patients (not rows) by sex, race, ethnicity and age
    band, and where they came from (simulated or real)."""
    try:
        training = load_training_set(content_hash)
    except NotFound:
        return None
    frame = training.demographics.copy()
    frame["patient"] = training.patient_ids
    first = frame.drop_duplicates("patient")
    ages = first["age_years"].astype(int)
    first = first.assign(
        age_band=np.select([ages < 45, ages < 65], ["18-44", "45-64"], default="65+")
    )
    total = len(first)

    def shares(column: str) -> dict:
        counts = first[column].astype(str).value_counts()
        return {
            str(k): {"patients": int(v), "share": round(v / total, 3)} for k, v in counts.items()
        }

    real = int(sum(str(p).startswith("db-") for p in first["patient"]))
    return {
        "patients": total,
        "rows": len(training),
        "real_patients": real,
        "simulated_patients": total - real,
        "sex": shares("sex"),
        "race": shares("race"),
        "ethnicity": shares("ethnicity"),
        "age_band": shares("age_band"),
    }


def _gates(record: dict) -> list[dict]:
    gates = []
    for gate in record.get("gates", []):
        detail = gate.get("detail") or {}
        gates.append(
            {
                "name": gate["name"],
                "passed": gate["passed"],
                "failures": detail.get("failures") or detail.get("violations") or [],
                "waivable": gate.get("waivable", False),
            }
        )
    return gates


def _subgroups(record: dict) -> list[dict] | None:
    """Policy outcomes by subgroup against each reference, as the simulated-policy gate recorded
    them (``models_ml.gates.simulated_policy_gate``): one row per subgroup, reference and
    endpoint."""
    for gate in record.get("gates", []):
        if gate["name"] != "simulated_policy":
            continue
        rows = []
        for subgroup, by_reference in ((gate.get("detail") or {}).get("subgroups") or {}).items():
            for reference, endpoints in by_reference.items():
                if not isinstance(endpoints, list):
                    continue
                for item in endpoints:
                    rows.append(
                        {
                            "subgroup": subgroup,
                            "reference": reference,
                            "endpoint": item.get("endpoint"),
                            "unit": item.get("unit"),
                            "patients": item.get("patients"),
                            "model": item.get("candidate"),
                            "reference_value": item.get("reference"),
                            "margin": item.get("margin"),
                            "verdict": item.get("verdict"),
                        }
                    )
        return rows or None
    return None


def _fairness(report: dict) -> dict:
    if not report:
        return {"assessed": False}
    groups = []
    for group in report.get("groups", []):
        groups.append(
            {
                "attribute": group.get("attribute"),
                "group": group.get("group"),
                "rows": group.get("size") or group.get("rows"),
                "is_reference": group.get("is_reference", False),
                "ratios": {
                    name: metric.get("ratio")
                    for name, metric in (group.get("metrics") or {}).items()
                },
            }
        )
    return {"assessed": True, "groups": groups}


def _privacy(model_version: ModelVersion, audience: str) -> dict:
    privacy = dict(model_version.privacy or {})
    if not is_private_record(privacy):
        waiver = privacy.get("waiver") or None
        shown = {
            "private": False,
            "real_patients": privacy.get("real_patients", 0),
            "waiver": (
                {"reason": waiver.get("reason"), "by": waiver.get("by")} if waiver else None
            ),
        }
        return shown
    shown = {
        key: privacy[key]
        for key in (
            "epsilon",
            "delta",
            "privacy_unit",
            "n_units",
            "noise_multiplier",
            "max_grad_norm",
            "sample_rate",
            "steps",
            "epochs",
            "cumulative_epsilon",
            "budget_epsilon",
            "patient_ledger",
        )
        if key in privacy
    }
    shown["private"] = True
    if audience == "owner":
        shown["record"] = privacy
    return shown


def _metrics(model_version: ModelVersion, audience: str) -> dict:
    """Owners see every figure; everyone else the public ones (``metrics["visibility"]``: a
    figure computed on real patients' rows outside ε is the owners'). A record written before
    the visibility map: a private model's figures are withheld, a non-private one's shown."""
    metrics = dict(model_version.metrics or {})
    if audience == "owner":
        return metrics
    if "visibility" in metrics:
        shown = public_metrics(metrics)
        withheld = sorted(set(metrics) - set(shown) - {"visibility"})
        if withheld:
            shown["withheld"] = "computed on real patients' data; shown to model owners only"
        return shown
    if is_private_record(model_version.privacy or {}):
        return {"withheld": "computed on real patients' data; shown to model owners only"}
    return metrics


def model_card(model_version: ModelVersion, *, audience: str = "clinician") -> dict:
    """The card of ``model_version`` for ``audience`` (``clinician`` or ``owner``)."""
    if audience not in AUDIENCES:
        raise ValueError(f"unknown audience {audience!r}")
    dataset = model_version.dataset
    parameters = dict(model_version.parameters or {})
    libraries = parameters.pop("libraries", None)
    gate_record = model_version.gate_results or {}
    return {
        "card_version": CARD_VERSION,
        "model": {
            "version": model_version.version,
            "kind": model_version.kind,
            "stage": model_version.stage,
            "in_production": model_version.stage == Stage.PRODUCTION,
            "created_at": model_version.created_at.isoformat(),
            "promoted_at": (
                model_version.promoted_at.isoformat() if model_version.promoted_at else None
            ),
            "replaced": (
                model_version.previous_production.version
                if model_version.previous_production is not None
                else None
            ),
            "artifact_sha256": model_version.artifact_sha256,
            "feature_set": model_version.feature_set,
            "code_version": model_version.code_version,
        },
        "intended_use": INTENDED_USE,
        "out_of_scope": list(OUT_OF_SCOPE),
        "training_data": {
            "dataset": dataset.content_hash,
            "rows": dataset.row_count,
            "patients": dataset.patient_count,
            "source": dataset.source,
            "make_up": _make_up(dataset.content_hash),
        },
        "evaluation": {
            "simulated": True,
            "limits": list(EVALUATION_LIMITS),
            "evaluated": bool(gate_record),
            "passed": gate_record.get("passed") if gate_record else None,
            "gates": _gates(gate_record),
            "metrics": _metrics(model_version, audience),
            "waiver": (
                {
                    "reason": model_version.waiver_reason,
                    "by": model_version.waived_by.get_username()
                    if model_version.waived_by is not None
                    else None,
                }
                if model_version.waiver_reason
                else None
            ),
        },
        "subgroup_outcomes": _subgroups(gate_record),
        "fairness": _fairness(model_version.fairness_report or {}),
        "privacy": _privacy(model_version, audience),
        "course_rules": model_version.course_rules or None,
        "software": {"libraries": libraries, "parameters": parameters},
        "input_ranges": model_version.input_ranges or None,
        "change_control": CHANGE_CONTROL,
    }
