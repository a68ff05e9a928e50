"""What the model owner workspace shows: every version in a line, and one version's page —
lineage, gates with their evidence, fairness, privacy spent, monitoring, alerts and the stage
changes open to it. Everything is read from the records the lifecycle keeps; nothing is
recomputed. Clinicians' overrides live in ``clinicians``, which ``models_ml`` may not import: the
caller passes their counts in, and they are judged as the override monitor judges them
(``models_ml.monitoring.override_report``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Count, Max

from models_ml import alerts, gate_evaluation
from models_ml.model_card import model_card
from models_ml.models import (
    DriftReport,
    ModelAlert,
    ModelVersion,
    PatientPrivacySpend,
    PrivacyLedgerEntry,
    Stage,
)
from models_ml.monitoring import override_report
from models_ml.workspace.evidence import (
    GateEvidence,
    Table,
    fairness_table,
    gate_evidence,
    show,
    subgroup_table,
)

MONITORS = ("drift", "outcome", "overrides")
DRIFT_HISTORY = 30
CLOSED_ALERTS_SHOWN = 10


@dataclass(frozen=True)
class VersionRow:
    """One line of the versions list."""

    version: str
    kind: str
    stage: str
    created_at: datetime
    promoted_at: datetime | None
    dataset: str
    evaluated: bool
    passed: bool | None
    failed_gates: tuple[str, ...]
    epsilon: float | None
    drift: dict[str, str]  # monitor -> newest verdict
    alerts_in_force: int
    overrides: dict[str, Any]


@dataclass(frozen=True)
class VersionEvidence:
    """Everything the page of one version shows."""

    model_version: ModelVersion
    card: dict[str, Any]
    gates: tuple[GateEvidence, ...]
    gate_record: dict[str, Any]
    stale_because: str
    waivable_failed: tuple[str, ...]
    fairness: Table | None
    subgroup_outcomes: Table | None
    privacy: dict[str, Any]
    ledger: Table | None
    patient_spend: dict[str, Any]
    drift_latest: tuple[DriftReport, ...]
    drift_history: tuple[DriftReport, ...]
    alerts_in_force: tuple[ModelAlert, ...]
    alerts_closed: tuple[ModelAlert, ...]
    overrides: dict[str, Any]
    can_promote: bool = False
    can_shadow: bool = False
    can_roll_back: bool = False
    restores: str = ""
    replaces: str = ""
    lineage: tuple[tuple[str, str], ...] = field(default=())


def _latest_reports(versions: Iterable[int]) -> dict[tuple[int, str], DriftReport]:
    """The newest monitoring report per (version, monitor)."""
    newest = (
        DriftReport.objects.filter(model_version_id__in=list(versions))
        .values("model_version_id", "monitor")
        .annotate(latest=Max("id"))
    )
    ids = [row["latest"] for row in newest]
    return {
        (report.model_version_id, report.monitor): report
        for report in DriftReport.objects.filter(pk__in=ids)
    }


def versions_overview(overrides: Mapping[str, tuple[int, int]]) -> list[VersionRow]:
    """Every model version, newest first, with its gates, privacy, newest monitoring verdicts,
    alerts in force and clinicians' overrides (``overrides``: version -> (decided, overridden))."""
    versions = list(ModelVersion.objects.select_related("dataset").order_by("-created_at", "-id"))
    reports = _latest_reports(mv.pk for mv in versions)
    in_force = dict(
        ModelAlert.objects.filter(is_open=True)
        .values("model_version_id")
        .annotate(n=Count("id"))
        .values_list("model_version_id", "n")
    )
    rows = []
    for mv in versions:
        record = mv.gate_results or {}
        rows.append(
            VersionRow(
                version=mv.version,
                kind=mv.kind,
                stage=mv.stage,
                created_at=mv.created_at,
                promoted_at=mv.promoted_at,
                dataset=mv.dataset.content_hash,
                evaluated=bool(record),
                passed=record.get("passed") if record else None,
                failed_gates=tuple(
                    gate["name"] for gate in record.get("gates", []) if not gate.get("passed")
                ),
                epsilon=(mv.privacy or {}).get("epsilon"),
                drift={
                    monitor: reports[(mv.pk, monitor)].verdict
                    for monitor in MONITORS
                    if (mv.pk, monitor) in reports
                },
                alerts_in_force=in_force.get(mv.pk, 0),
                overrides=override_report(*overrides.get(mv.version, (0, 0))),
            )
        )
    return rows


def version_evidence(
    model_version: ModelVersion, *, decided: int, overridden: int
) -> VersionEvidence:
    """The page of one version: its lineage, gates with their evidence, fairness, privacy,
    monitoring, alerts and the stage changes open to it."""
    card = model_card(model_version, audience="owner")
    record = model_version.gate_results or {}
    gates = tuple(gate_evidence(gate) for gate in record.get("gates", []))
    in_force = tuple(alerts.alerts_for(version=model_version.version).filter(is_open=True))
    closed = tuple(
        alerts.alerts_for(version=model_version.version).filter(is_open=False)[:CLOSED_ALERTS_SHOWN]
    )
    history = tuple(
        DriftReport.objects.filter(model_version=model_version).order_by("-created_at", "-id")[
            :DRIFT_HISTORY
        ]
    )
    latest = _latest_reports([model_version.pk])
    previous = model_version.previous_production
    return VersionEvidence(
        model_version=model_version,
        card=card,
        gates=gates,
        gate_record={k: v for k, v in record.items() if k != "gates"},
        stale_because=gate_evaluation.stale_because(model_version) if record else "",
        waivable_failed=waivable_failed_gates(model_version),
        fairness=fairness_table(card["fairness"]),
        subgroup_outcomes=subgroup_table(card["subgroup_outcomes"]),
        privacy=card["privacy"],
        ledger=_ledger_table(model_version),
        patient_spend=_patient_spend(model_version),
        drift_latest=tuple(
            latest[(model_version.pk, m)] for m in MONITORS if (model_version.pk, m) in latest
        ),
        drift_history=history,
        alerts_in_force=in_force,
        alerts_closed=closed,
        overrides=override_report(decided, overridden),
        can_promote=model_version.stage in (Stage.CANDIDATE, Stage.SHADOW),
        can_shadow=model_version.stage == Stage.CANDIDATE,
        can_roll_back=model_version.stage == Stage.PRODUCTION,
        restores=previous.version if previous is not None else "the protocol",
        replaces=getattr(gate_evaluation.current_production(model_version), "version", "")
        or "the protocol (no model in production)",
        lineage=_lineage(model_version, card),
    )


def waivable_failed_gates(model_version: ModelVersion) -> tuple[str, ...]:
    """The gates a model owner may waive at promotion: failed and waivable."""
    return tuple(
        gate["name"]
        for gate in (model_version.gate_results or {}).get("gates", [])
        if not gate.get("passed") and gate.get("waivable")
    )


def failing_gates(
    model_version: ModelVersion, *, waived: Iterable[str] = ()
) -> list[dict[str, Any]]:
    """The failed gates of the stored record with their reasons in words (what a refused
    promotion shows beside the registry's message), each marked when the refused request
    waived it."""
    waived = set(waived)
    failing = []
    for gate in (model_version.gate_results or {}).get("gates", []):
        if not gate.get("passed"):
            detail = gate.get("detail") or {}
            failing.append(
                {
                    "name": gate["name"],
                    "waivable": bool(gate.get("waivable")),
                    "waived": gate["name"] in waived,
                    "reasons": list(detail.get("failures") or detail.get("violations") or []),
                }
            )
    return failing


def _lineage(model_version: ModelVersion, card: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    dataset = model_version.dataset
    parameters = card["software"]["parameters"] or {}
    return (
        ("Dataset snapshot (SHA-256)", dataset.content_hash),
        ("Rows / patients", f"{dataset.row_count} / {dataset.patient_count}"),
        ("Dataset source", show(dataset.source) if dataset.source else "—"),
        ("Dataset dates", f"{show(dataset.date_from)} – {show(dataset.date_to)}"),
        ("Training run", f"{model_version.kind}, code {model_version.code_version}"),
        ("Training parameters", show(parameters) if parameters else "—"),
        (
            "Libraries",
            show(card["software"]["libraries"]) if card["software"]["libraries"] else "—",
        ),
        ("Artifact (SHA-256)", model_version.artifact_sha256),
        ("Feature set", model_version.feature_set),
        ("Registered", model_version.created_at.isoformat(timespec="seconds")),
        (
            "Promoted",
            (
                f"{model_version.promoted_at.isoformat(timespec='seconds')} by "
                f"{model_version.promoted_by.get_username() if model_version.promoted_by else '—'}"
            )
            if model_version.promoted_at
            else "—",
        ),
        (
            "Replaced",
            model_version.previous_production.version if model_version.previous_production else "—",
        ),
    )


def _ledger_table(model_version: ModelVersion) -> Table | None:
    """The dataset's privacy ledger: every private training on it, this one marked."""
    entries = list(
        PrivacyLedgerEntry.objects.filter(dataset=model_version.dataset)
        .select_related("model_version")
        .order_by("created_at", "id")
    )
    if not entries:
        return None
    dataset = model_version.dataset
    return Table(
        f"Privacy ledger of dataset {dataset.content_hash[:12]} "
        f"(budget ε {show(dataset.privacy_budget_epsilon)})",
        ("Training", "ε this run", "ε cumulative", "δ", "Unit", "Noise", "Steps", "When"),
        tuple(
            (
                entry.model_version.version if entry.model_version else "—",
                show(entry.epsilon),
                show(entry.cumulative_epsilon),
                show(entry.delta),
                entry.privacy_unit,
                show(entry.noise_multiplier),
                show(entry.steps),
                entry.created_at.isoformat(timespec="seconds"),
            )
            for entry in entries
        ),
        tuple(entry.model_version_id == model_version.pk for entry in entries),
    )


def _patient_spend(model_version: ModelVersion) -> dict[str, Any]:
    """Real patients this training spent privacy on, and the highest lifetime ε among them."""
    spend = PatientPrivacySpend.objects.filter(model_version=model_version).aggregate(
        patients=Count("id"), highest=Max("cumulative_epsilon_rdp")
    )
    return {
        "patients": spend["patients"],
        "highest_lifetime_epsilon": spend["highest"],
        "budget_epsilon": getattr(settings, "PATIENT_PRIVACY_BUDGET_EPSILON", None),
    }
