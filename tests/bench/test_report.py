"""The benchmark report: results.json rows replaced per suite, the "Headline figures" section
of RESULTS.md generated from them (goals not met named), suites that need PostgreSQL reported
skipped rather than left out, and no suite given the operator's own database to drop."""

from __future__ import annotations

import json

import pytest

import bench
from bench import __main__ as runner
from bench import alert_load_bench, ws_latency_bench

RESULTS_MD = """# Benchmark results

Written by `python -m bench`.

<!-- audit:start -->
## Audit journal
a table
<!-- audit:end -->
"""


@pytest.fixture
def report(tmp_path, monkeypatch):
    """RESULTS.md and results.json in a temporary directory, where ``python -m bench`` and
    ``bench.write_rows`` write by default."""
    md, rows = tmp_path / "RESULTS.md", tmp_path / "results.json"
    md.write_text(RESULTS_MD)
    monkeypatch.setattr(bench, "RESULTS_JSON", rows)
    monkeypatch.setattr(runner, "RESULTS_JSON", rows)
    monkeypatch.setattr(runner, "RESULTS_PATH", md)
    return md, rows


def _rows(path) -> list[dict]:
    return json.loads(path.read_text())["rows"]


def _figure(what: str, value: float, *, goal: str | None = None, met: bool | None = None):
    return bench.row(what, value, "ms", reference=10.0, reference_what="ref", goal=goal, met=met)


def test_write_rows_replaces_only_its_suites_rows_and_stamps_each(report):
    _, path = report
    bench.write_rows("audit", [_figure("a", 1.0)], command="python -m bench.audit_bench")
    bench.write_rows("cds_hooks", [_figure("old", 2.0)], command="c1", date="2026-01-01")
    bench.write_rows("cds_hooks", [_figure("new", 3.0), _figure("new 2", 4.0)], command="c2")

    rows = _rows(path)
    assert [(r["suite"], r["what"]) for r in rows] == [
        ("audit", "a"),
        ("cds_hooks", "new"),
        ("cds_hooks", "new 2"),
    ]
    assert list(rows[0]) == list(bench.ROW_KEYS)
    assert rows[1]["command"] == "c2" and rows[1]["date"] != "2026-01-01"
    assert rows[0]["machine"] and rows[0]["ratio"] == 0.1  # value ÷ reference


def test_headline_table_lists_goals_and_names_those_not_met(report):
    md, _ = report
    bench.write_rows(
        "cds_hooks",
        [
            _figure("hook p95", 45.0, goal="< 200 ms", met=True),
            _figure("no goal here", 7.0),
        ],
        command="c",
    )
    bench.write_rows(
        "load", [_figure("patients per machine", 5708.0, goal="≥ 100,000", met=False)], command="l"
    )

    runner.write_headline()

    text = md.read_text()
    headline = text[text.index("<!-- headline:start -->") : text.index("<!-- headline:end -->")]
    assert "| cds_hooks | hook p95 | 45.0 ms |" in headline
    assert "no goal here" not in headline
    assert "| load | patients per machine | 5,708 ms |" in headline
    assert "**not met**" in headline
    assert "Goals met: **1 of 2**" in headline
    assert "- load: patients per machine — 5,708 ms (goal ≥ 100,000)" in headline
    # At the top: before the first suite's section, which is kept.
    assert text.index("<!-- headline:start -->") < text.index("<!-- audit:start -->")
    assert "## Audit journal\na table" in text


def test_headline_is_replaced_not_repeated_when_the_rows_change(report):
    md, _ = report
    bench.write_rows("audit", [_figure("a", 1.0, goal="≥ 1", met=False)], command="c")
    runner.write_headline()
    bench.write_rows("audit", [_figure("a", 1.0, goal="≥ 1", met=True)], command="c")
    runner.write_headline()

    text = md.read_text()
    assert text.count("<!-- headline:start -->") == 1
    assert "Goals not met: none." in text and "**not met**" not in text


def test_a_suite_needing_postgresql_is_reported_skipped_keeping_its_dated_figures(report):
    md, path = report
    bench.write_rows(
        "journal",
        [_figure("audited writes/s", 713.0, goal="≥ 0.7", met=False)],
        command="python -m bench.journal_bench --database-url …",
        date="2026-12-03 10:00 UTC",
    )
    bench.write_rows("audit", [_figure("kept", 1.0)], command="c")

    runner.main(["--only", "journal", "--only", "load"])
    runner.main(["--only", "journal"])  # a second skip does not pile up notes

    rows = _rows(path)
    journal = [r for r in rows if r["suite"] == "journal"]
    assert [r["what"] for r in journal] == ["audited writes/s", "journal: not measured in this run"]
    assert journal[0]["date"] == "2026-12-03 10:00 UTC"
    assert journal[1]["met"] is None and "needs PostgreSQL" in journal[1]["detail"]["skipped"]
    assert any(r["suite"] == "load" and "skipped" in (r["detail"] or {}) for r in rows)
    assert any(r["suite"] == "audit" and r["what"] == "kept" for r in rows)
    assert "skipped: needs PostgreSQL" in md.read_text()


def test_suites_that_recreate_their_database_get_one_beside_the_operators():
    url = "postgres://clinaiops:secret@127.0.0.1:5432/clinaiops"
    assert runner.suite_database_url("ws_latency", url).endswith("/clinaiops_wsbench")
    assert runner.suite_database_url("alert_load", url).endswith("/clinaiops_alertload")
    # These derive their own database (ingest, load) or create a fresh one (audit, journal).
    assert runner.suite_database_url("ingest", url) == url


def _step(rate: float, crisis_p99_ms: float | None, sustained: bool) -> dict:
    return {
        "rate": rate,
        "answered_2xx_per_s": rate,
        "upload_p95_ms": 100.0,
        "crisis_p99_ms": crisis_p99_ms,
        "crises": 10,
        "sustained": sustained,
    }


def test_alert_load_rows_judge_the_crisis_p99_at_the_heaviest_sustained_step():
    steps = [_step(4, 300.0, True), _step(6, 6200.0, True), _step(8, 9000.0, False)]

    heaviest, crisis = alert_load_bench.result_rows(steps, load_patients=40)

    assert heaviest["value"] == 6
    assert crisis["value"] == 6200 and crisis["met"] is False
    assert len(heaviest["detail"]["steps"]) == 3


def test_alert_load_rows_say_so_when_no_step_was_sustained():
    (only,) = alert_load_bench.result_rows([_step(4, 100.0, False)], load_patients=40)

    assert only["value"] is None and only["met"] is None
    assert "no step was sustained" in only["detail"]["not_judged"]


def test_websocket_rows_hold_the_loaded_stack_to_five_seconds_and_the_others_to_250_ms():
    stacks = [
        {
            "stack": "embedded",
            "samples": 30,
            "median_ms": 90,
            "p95_ms": 120,
            "p99_ms": 300,
            "max_ms": 310,
        },
        {
            "stack": "PostgreSQL, under 20 routine uploads/s",
            "samples": 30,
            "median_ms": 200,
            "p95_ms": 500,
            "p99_ms": 900,
            "max_ms": 950,
        },
    ]

    quiet, loaded = ws_latency_bench.result_rows(stacks)

    assert (quiet["goal"], quiet["met"]) == ("< 250 ms", False)
    assert (loaded["goal"], loaded["met"]) == ("< 5,000 ms", True)
