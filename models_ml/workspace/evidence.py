"""A gate record as a model owner reads it: per gate, the failures in words, the figures worth
reading first, the structured evidence as tables and the whole record; and the owners' card's
fairness table and subgroup outcomes as tables. Pure: reads the dictionaries the gates
(``models_ml.gates``) and the model card (``models_ml.model_card``) write, and nothing else."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from models_ml.gates import FAIRNESS_BAND


@dataclass(frozen=True)
class Table:
    caption: str
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    flagged: tuple[bool, ...] = ()  # per row: a failure or a value outside its band

    @property
    def lines(self) -> list[tuple[tuple[str, ...], bool]]:
        flags = self.flagged or (False,) * len(self.rows)
        return list(zip(self.rows, flags, strict=True))


@dataclass(frozen=True)
class GateEvidence:
    name: str
    passed: bool
    waivable: bool
    failures: tuple[str, ...]
    figures: tuple[tuple[str, str], ...]
    notes: tuple[str, ...]
    tables: tuple[Table, ...]
    record: str  # the gate's whole detail, as JSON for reading


# The figures worth reading first, per gate, in the order shown; the whole detail follows them.
_FIGURES: dict[str, tuple[tuple[str, str], ...]] = {
    "held_out_error": (
        ("candidate_mae_mmhg", "Candidate MAE (mmHg)"),
        ("protocol_mae_mmhg", "Protocol MAE (mmHg)"),
        ("production_mae_mmhg", "Production MAE (mmHg)"),
        ("tolerance", "Tolerance (relative)"),
        ("rows", "Held-out rows"),
        ("patients", "Held-out patients"),
        ("references", "Judged against"),
    ),
    "simulated_policy": (
        ("references", "Judged against"),
        ("margins", "Non-inferiority margins"),
        ("too_few_patients_to_judge", "Subgroups too small to judge"),
    ),
    "first_line_drug_choice": (
        ("black_patients", "Black patients in the cohort"),
        ("margin", "Margin"),
        ("references", "Judged against"),
    ),
    "training_representativeness": (
        ("training_patients", "Training patients"),
        ("population_patients", "Evaluation population patients"),
        ("tolerance", "Tolerance (share of the population's)"),
        ("alpha", "α"),
        ("too_few_expected_to_judge", "Subgroups too rare to judge"),
    ),
    "fairness": (
        ("band", "Disparity band"),
        ("comparisons", "Ratios judged (Bonferroni family)"),
        ("patients", "Held-out patients"),
        ("rows", "Held-out rows"),
        ("clustered_by", "Intervals clustered by"),
    ),
    "privacy": (
        ("private", "Trained with differential privacy"),
        ("epsilon", "ε"),
        ("max_epsilon", "ε allowed"),
        ("delta", "δ"),
        ("max_delta", "δ allowed (1/U)"),
        ("privacy_unit", "Privacy unit"),
        ("cumulative_epsilon", "Dataset ledger ε"),
        ("budget_epsilon", "Dataset budget ε"),
        ("real_patients", "Real patients"),
    ),
}


def gate_evidence(gate: dict[str, Any]) -> GateEvidence:
    name = gate["name"]
    detail = gate.get("detail") or {}
    chosen = _FIGURES.get(name)
    if chosen is None:  # a gate this page does not know yet: its plain values
        chosen = tuple(
            (key, key.replace("_", " ")) for key, value in detail.items() if _is_plain(value)
        )
    figures = tuple((label, show(detail[key])) for key, label in chosen if key in detail)
    notes = [str(detail["rule"])] if detail.get("rule") else []
    if name == "fairness":
        notes += [
            f"Outside the band but not significant: {item}"
            for item in detail.get("outside_band_but_not_significant") or []
        ]
    if detail.get("cohort"):
        notes.append(f"Simulated cohort: {show(detail['cohort'])}")
    return GateEvidence(
        name=name,
        passed=bool(gate.get("passed")),
        waivable=bool(gate.get("waivable")),
        failures=tuple(
            str(item) for item in detail.get("failures") or detail.get("violations") or []
        ),
        figures=figures,
        notes=tuple(notes),
        tables=_gate_tables(name, detail),
        record=json.dumps(detail, indent=2, sort_keys=True, default=str),
    )


def _records_table(
    caption: str,
    key_header: str,
    columns: Sequence[tuple[str, str]],
    records: Mapping[str, Mapping[str, Any]],
    is_flagged: Callable[[Mapping[str, Any]], bool] = lambda record: False,
) -> Table:
    """One row per named record (a policy, a reference, a subgroup): its name, then
    ``columns`` (key, header) read from it. The candidate first, then the others by name:
    PostgreSQL's JSONB does not keep the order the gates wrote their keys in."""
    ordered = sorted(records.items(), key=lambda item: (item[0] != "candidate", item[0]))
    return Table(
        caption,
        (key_header, *(header for _, header in columns)),
        tuple((name, *(show(record.get(key)) for key, _ in columns)) for name, record in ordered),
        tuple(is_flagged(record) for _, record in ordered),
    )


POLICY_OUTCOMES = (
    ("time_in_target_range", "Time in target range"),
    ("hypotension_per_1000_days", "Hypotension /1000 days"),
    ("crisis_per_1000_days", "Crisis /1000 days"),
    ("hypotension_event_days", "Hypotension event-days"),
    ("crisis_event_days", "Crisis event-days"),
    ("dose_changes", "Dose changes"),
)
PAIRED_COMPARISON = (
    ("patients", "Patients"),
    ("candidate", "Candidate"),
    ("reference", "Reference"),
    ("excess", "Excess"),
    ("excess_one_sided_95", "One-sided 95 %"),
    ("margin", "Margin"),
    ("verdict", "Verdict"),
)
MAKE_UP = (
    ("training_patients", "Training patients"),
    ("training_share", "Training share"),
    ("population_share", "Population share"),
    ("ratio", "Ratio"),
    ("verdict", "Verdict"),
)


def _gate_tables(name: str, detail: dict[str, Any]) -> tuple[Table, ...]:
    """The structured parts of a gate's evidence (``models_ml.gates`` writes them), as tables."""
    tables = []
    if name == "simulated_policy" and detail.get("outcomes"):
        tables.append(
            _records_table(
                "Outcomes on the simulated cohort (population-weighted)",
                "Policy",
                POLICY_OUTCOMES,
                detail["outcomes"],
            )
        )
    judged = detail.get("ace_inhibitor_without_ccb_or_thiazide_in_black_patients") or {}
    if name == "first_line_drug_choice" and judged:
        tables.append(
            _records_table(
                "ACE inhibitor started without a CCB or thiazide, Black patients",
                "Against",
                PAIRED_COMPARISON,
                judged,
                lambda record: bool(record.get("failed")),
            )
        )
    by_subgroup = detail.get("ace_inhibitor_started_pp_by_subgroup") or {}
    if name == "first_line_drug_choice" and by_subgroup:
        policies = sorted({key for row in by_subgroup.values() for key in row} - {"patients"})
        tables.append(
            _records_table(
                "ACE inhibitor started (% of patients), by subgroup",
                "Subgroup",
                (("patients", "Patients"), *((policy, policy) for policy in policies)),
                by_subgroup,
            )
        )
    if name == "training_representativeness" and detail.get("subgroups"):
        tables.append(
            _records_table(
                "Training patients against the evaluation population",
                "Subgroup",
                MAKE_UP,
                detail["subgroups"],
                lambda record: record.get("verdict") == "under_represented",
            )
        )
    return tuple(tables)


def fairness_table(fairness: dict[str, Any]) -> Table | None:
    """The owners' card's fairness table: disparity ratios per group against the reference
    group of its attribute; a ratio outside the gates' band is flagged (whether it failed the
    gate — beyond sampling noise — the fairness gate's evidence says)."""
    if not fairness.get("assessed"):
        return None
    low, high = FAIRNESS_BAND
    groups = fairness.get("groups") or []
    metrics = sorted({metric for group in groups for metric in group.get("ratios") or {}})
    rows, flagged = [], []
    for group in groups:
        ratios = group.get("ratios") or {}
        rows.append(
            (
                str(group.get("attribute")),
                str(group.get("group")) + (" (reference)" if group.get("is_reference") else ""),
                show(group.get("rows")),
                *(show(ratios.get(metric)) for metric in metrics),
            )
        )
        flagged.append(
            any(
                isinstance(ratios.get(m), int | float) and not low <= ratios[m] <= high
                for m in metrics
            )
        )
    return Table(
        f"Disparity ratios against the reference group (band {low}–{high})",
        ("Attribute", "Group", "Rows", *(f"{metric} ratio" for metric in metrics)),
        tuple(rows),
        tuple(flagged),
    )


def subgroup_table(rows: list[dict[str, Any]] | None) -> Table | None:
    if not rows:
        return None
    return Table(
        "Policy outcomes by subgroup in simulation (paired with each reference)",
        ("Subgroup", "Against", "Outcome", "Patients", "Model", "Reference", "Margin", "Verdict"),
        tuple(
            (
                str(row["subgroup"]),
                str(row["reference"]),
                f"{row['endpoint']} ({row['unit']})",
                show(row["patients"]),
                show(row["model"]),
                show(row["reference_value"]),
                show(row["margin"]),
                show(row["verdict"]),
            )
            for row in rows
        ),
        tuple(
            row["verdict"] in ("non_inferiority_not_shown", "worse_beyond_margin") for row in rows
        ),
    )


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def show(value: Any) -> str:
    """A recorded value as an owner reads it: numbers to four significant figures."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(show(item) for item in value) if value else "none"
    if isinstance(value, dict):
        return "; ".join(f"{key}: {show(item)}" for key, item in value.items()) if value else "—"
    return str(value)
