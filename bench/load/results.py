"""The load run's section of bench/RESULTS.md and its rows of bench/results.json.

results.json is ``{"rows": [...]}``; each row has the stable names ``suite, what, value, unit,
reference, reference_what, ratio, goal, met, machine, date, command`` (and ``detail`` where a
figure needs its working). A suite replaces only its own rows.
"""

from __future__ import annotations

from pathlib import Path

from bench import machine_line, row, write_rows

RESULTS_JSON = Path(__file__).resolve().parents[1] / "results.json"
PREVIOUS_PATIENTS = 4000  # the outside SRE run on PostgreSQL + Redis + Celery (issue 17)
GOAL_PATIENTS = 100_000
# The same harness (short profile) on this machine before issue 17's evaluation, connection and
# model-row changes (commit f81bac8), re-measured on a quiet machine minutes before the run it is
# compared with. (The first measurement, 11:29 on a shared machine, gave 5,708: the machine's
# load moves this figure by a third or more, so only runs minutes apart are compared.)
BEFORE = {
    "when": "2026-12-03 18:09 UTC, commit f81bac8, same harness and quiet machine",
    "runs_per_upload": round(341 / 313, 3),
    "per_evaluation_s": 0.0540,
    "web_per_upload_s": 0.0487,
    "per_upload_s": 0.1027,
    "patients": 7973,
}


def rows(outcome: dict) -> list[dict]:
    if "skipped" in outcome:
        return [
            {
                "what": "load harness",
                "value": None,
                "unit": None,
                "reference": None,
                "reference_what": None,
                "ratio": None,
                "goal": "runs",
                "met": False,
                "detail": outcome["skipped"],
            }
        ]
    measure, check, guess = outcome["measure"], outcome["check"], outcome["estimate"]
    out: list[dict] = []

    def add(what, value, unit, goal, met, reference=None, reference_what=None, detail=None):
        out.append(
            row(
                what,
                value,
                unit,
                reference=reference,
                reference_what=reference_what,
                goal=goal,
                met=met,
                detail=detail,
            )
        )

    for phase in (measure, check):
        label = f"load ({phase['phase']}, {phase['equivalent_patients']:,} patients' cadence)"
        offered = phase["offered_uploads_per_s"]  # due on the phones' schedule
        add(
            f"{label}: sustained uploads/s",
            phase["uploads_per_s"],
            "uploads/s",
            "≥ 0.95 × offered",
            phase["uploads_per_s"] >= 0.95 * offered,
            offered,
            "uploads/s the phones offered in the same window",
        )
        add(f"{label}: readings/s stored", phase["readings_per_s"], "readings/s", None, None)
        for endpoint, figures in phase["endpoints"].items():
            is_upload = endpoint.startswith("upload")
            p95 = figures["p95_ms"]
            add(
                f"{label}: {endpoint} p95",
                p95,
                "ms",
                "< 1000 ms" if is_upload else None,
                (p95 is not None and p95 < 1000) if is_upload else None,
                detail={k: figures[k] for k in ("calls", "p50_ms", "p99_ms", "errors")},
            )
        add(
            f"{label}: errors (HTTP ≥ 400 or no answer)",
            sum(phase["errors"].values()),
            "requests",
            "0",
            not phase["errors"],
            detail=phase["errors"],
        )
        add(
            f"{label}: evaluations/s (steady window)",
            phase["evaluations_per_s_steady"],
            "evaluations/s",
            None,
            None,
            phase["uploads_per_s"],
            "uploads/s in the same window",
        )
        add(
            f"{label}: queue depth, mean of the last third",
            phase["queue_last_third_mean"],
            "tasks",
            "no growth",
            not phase["queue_grows"],
            phase["queue_middle_mean"],
            "mean of the middle third",
            detail={"max": phase["queue_depth_max"], "drain_s": phase["drain_seconds"]},
        )
        add(
            f"{label}: server CPU per upload, its evaluations included",
            phase["cpu_per_upload_s"],
            "CPU-s",
            None,
            None,
            detail={**phase["cost"], "cpu_seconds": phase["cpu_seconds"]},
        )
    add(
        "load: patients one 2-core machine serves (1 BP/30 min + HR/min, p95 < 1 s, 70 % CPU)",
        guess["patients"],
        "patients",
        f"≥ {GOAL_PATIENTS:,}",
        guess["patients"] >= GOAL_PATIENTS,
        PREVIOUS_PATIENTS,
        "the outside SRE run (issue 17), not measured in this run",
        detail=guess["arithmetic"],
    )
    # Each bottleneck removed, before and after, from the measure phase.
    cost = measure["cost"]
    before = f"the same harness before the changes ({BEFORE['when']})"
    add(
        "load: evaluation runs per upload (heart rate alone no longer evaluated)",
        round(measure["evaluations_phase_and_drain"] / max(1, measure["uploads_phase"]), 3),
        "runs/upload",
        None,
        None,
        BEFORE["runs_per_upload"],
        before,
    )
    add(
        "load: CPU-s per evaluation run (worker + its PostgreSQL; pooled connections, "
        "no SHAP for an unchanged proposal, features summed in the database)",
        cost["per_evaluation_s"],
        "CPU-s",
        None,
        None,
        BEFORE["per_evaluation_s"],
        before,
    )
    add(
        "load: web CPU-s per upload (daphne + its PostgreSQL; no inline check for heart rate)",
        cost["web_per_upload_s"],
        "CPU-s",
        None,
        None,
        BEFORE["web_per_upload_s"],
        before,
    )
    add(
        "load: server CPU-s per upload, its evaluations included",
        cost["per_upload_s"],
        "CPU-s",
        None,
        None,
        BEFORE["per_upload_s"],
        before,
    )
    add(
        "load: patients per machine against the same harness before the changes",
        guess["patients"],
        "patients",
        f"≥ {GOAL_PATIENTS:,}",
        guess["patients"] >= GOAL_PATIENTS,
        BEFORE["patients"],
        before,
    )
    add(
        "load: check at the estimate — upload p95 < 1 s and no queue growth",
        check["upload_p95_ms"],
        "ms",
        "p95 < 1000 ms, queue not growing, no upload errors",
        check["met"],
        detail={
            "equivalent_patients": check["equivalent_patients"],
            "target": check["equivalent_patients_target"],
            "queue_grows": check["queue_grows"],
        },
    )
    return out


def write_json(outcome: dict, path: Path = RESULTS_JSON, suite: str = "load") -> None:
    write_rows(
        suite,
        rows(outcome),
        command=outcome["command"],
        date=outcome["date"],
        machine=machine_line(outcome["machine"]),
        path=path,
    )


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _sparkline(depth: list[tuple[float, int]], width: int = 60) -> str:
    if not depth:
        return "–"
    blocks = " ▁▂▃▄▅▆▇█"
    step = max(1, len(depth) // width)
    points = [max(d for _, d in depth[i : i + step]) for i in range(0, len(depth), step)]
    top = max(points) or 1
    return "".join(blocks[min(8, round(8 * p / top))] for p in points) + f" (max {top})"


def render(outcome: dict) -> str:
    machine = outcome["machine"]
    long = outcome.get("profile") == "long"
    title = "the longer run (`make bench-load`)" if long else "the clinic as it runs"
    lines = [f"## Load: {title} (issue 17)", ""]
    lines.append(f"- Command: `{outcome['command']}`")
    lines.append(
        f"- Date: {outcome['date']}; machine: {machine['nproc']} cores ({machine['cpu']}), "
        f"{machine['os']}, Python {machine['python']}"
    )
    if "skipped" in outcome:
        lines.append(f"- **Not run**: {outcome['skipped']}.")
        return "\n".join(lines) + "\n"
    settings = outcome["settings"]
    lines += [
        f"- Stack (started by the run): daphne ×1, Celery worker `-Q safety,celery` prefork "
        f"`--concurrency 2`, beat; PostgreSQL database `clinaiops_load`, Redis db 15; the load "
        f"generator (one asyncio process, aiohttp) on the same 2 cores, shared with other work "
        f"(load average at the end of the check: {outcome['check']['load_average_end']}).",
        f"- Clinic: {settings['patients']} phones per cohort, {settings['history']:g} h of home "
        f"readings each ({outcome['history_readings']:,} readings), model "
        f"`{outcome['model_version'] or 'none: the protocol proposes'}`; set-up "
        f"{outcome['setup_seconds']:g} s. Phones on a compressed clock: an upload every 5–15 "
        f"simulated minutes (heart rate each minute, blood pressure ~every 30 min, steps), 2 % "
        f"re-uploads, 1 % backfills of 2–6 offline hours; two clinicians reviewing (queue, "
        f"alerts, a patient every 3–8 s); an auditor exporting the last hour as CSV every "
        f"minute. Each phase: {settings['duration']:g} s of load, the first "
        f"{min(20.0, settings['duration'] / 5):g} s not counted, then the queues drain. The idle "
        f"stack (beat's schedules, heartbeats) used {outcome['idle_cpu_per_s']['ours']:.3f} "
        f"CPU-s/s before the load; CPU per upload is what the phase and its drain used above "
        f"that, two clinicians' and the auditor's requests included.",
        "",
        "| phase | phones × compression = patients' cadence | uploads/s (offered) | readings/s "
        "| upload p50 / p95 / p99 ms | evaluations/s | queue max; last third vs middle | "
        "drain s | CPU-s per upload |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    for phase in (outcome["measure"], outcome["check"]):
        lines.append(
            f"| {phase['phase']} | {phase['phones']} × {phase['compression']:g} = "
            f"{phase['equivalent_patients']:,} | {phase['uploads_per_s']} "
            f"({phase['offered_uploads_per_s']:.1f}) | {phase['readings_per_s']} | "
            f"{_cell(phase['upload_p50_ms'])} / {_cell(phase['upload_p95_ms'])} / "
            f"{_cell(phase['upload_p99_ms'])} | {phase['evaluations_per_s_steady']} | "
            f"{phase['queue_depth_max']}; {phase['queue_last_third_mean']} vs "
            f"{phase['queue_middle_mean']}{' (grows)' if phase['queue_grows'] else ''} | "
            f"{phase['drain_seconds']}{'' if phase['drained'] else ' (not drained)'} | "
            f"{phase['cpu_per_upload_s']:.4f} |"
        )
    for phase in (outcome["measure"], outcome["check"]):
        lines += [
            "",
            f"### {phase['phase']}: per endpoint (steady window)",
            "",
            "| endpoint | calls | p50 ms | p95 ms | p99 ms | errors |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for endpoint, figures in phase["endpoints"].items():
            lines.append(
                f"| {endpoint} | {figures['calls']} | {_cell(figures['p50_ms'])} | "
                f"{_cell(figures['p95_ms'])} | {_cell(figures['p99_ms'])} | {figures['errors']} |"
            )
        errors = ", ".join(f"{k} ×{v}" for k, v in phase["errors"].items()) or "none"
        lines += [
            "",
            f"Errors: {errors}. Queue depth (celery + safety + reserved), one mark per "
            f"sample: `{_sparkline(phase['queue_depth'])}`. Exports finished in "
            f"{phase['exports_finished_s'] or '–'} s.",
            "",
            f"CPU-seconds over the phase and its drain ({phase['cpu_phase_seconds']} s): "
            + ", ".join(f"{k} {v}" for k, v in phase["cpu_seconds"].items())
            + f". Web side {phase['cost']['web_per_upload_s']:.4f} CPU-s per upload; "
            f"{phase['cost']['per_evaluation_s']:.4f} CPU-s per evaluation run; "
            f"{phase['evaluations_per_upload']} runs per upload here (the compressed clock "
            f"lets a lagging worker merge a phone's uploads; a clinic runs one per upload).",
        ]
    guess, check = outcome["estimate"], outcome["check"]
    verdict = "met" if guess["patients"] >= GOAL_PATIENTS else "**not met**"
    lines += [
        "",
        f"**Patients per 2-core machine: {guess['patients']:,}** (goal {GOAL_PATIENTS:,}: "
        f"{verdict}; the outside SRE run found about {PREVIOUS_PATIENTS:,}). "
        f"{guess['arithmetic']}",
        "",
        f"Check at the estimate ({check['phones']} phones × {check['compression']:g} = "
        f"{check['equivalent_patients']:,} patients' cadence"
        + (
            f", capped below the target {check['equivalent_patients_target']:,}"
            if check["equivalent_patients"] < 0.98 * check["equivalent_patients_target"]
            else ""
        )
        + f"): upload p95 {_cell(check['upload_p95_ms'])} ms, queue "
        f"{'grows' if check['queue_grows'] else 'does not grow'} — "
        + (
            "not judged: the check ran below the estimate."
            if check["met"] is None
            else ("**met**." if check["met"] else "**not met**.")
        ),
    ]
    return "\n".join(lines) + "\n"
