"""``python -m bench [--only SUITE ...] [--database-url URL] [--quick]``: run the benchmark
suites present in ``bench/``, each writing its section of ``bench/RESULTS.md`` and its rows of
``bench/results.json``; then the "Headline figures" section at the top of RESULTS.md, generated
from results.json so that the two never disagree.

A suite is ``bench/<name>_bench.py`` or a package ``bench/<name>/`` with ``__main__.py`` (the
load harness, ``bench/load``). ``ingest`` runs in-process here (SQLite, plus PostgreSQL
when ``--database-url`` is given). Any other suite is a script with ``main()`` that writes its own
section (it calls ``write_section``) and rows (``write_rows``); it runs as
``python -m bench.<name>_bench`` with those of ``--database-url`` and ``--quick`` it declares.

Suites that need PostgreSQL (``NEEDS_POSTGRESQL``) are not run without ``--database-url``: their
rows say so (``met: null``, ``detail.skipped``), the figures they last measured are kept with
their own date. A suite that fails gets a row saying so and the run goes on to the next one
(exit status 1 at the end). The URL's own database is never touched: each suite works in a
database of its own on that server (``SUITE_DATABASE``, or the suite derives one itself).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench import RESULTS_JSON, RESULTS_PATH, row, write_rows, write_section

BENCH_DIR = Path(__file__).resolve().parent
HEADLINE = "headline"
PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")  # masked in what a row says
# Suites that measure nothing without a PostgreSQL server, and why.
NEEDS_POSTGRESQL = {
    "alert_load": "the production stack (daphne, Celery workers, beat) runs on PostgreSQL",
    "growth": "it seeds and measures clinics of 1× to 100× the demo cohort on PostgreSQL",
    "journal": "concurrent writers need PostgreSQL (SQLite has one writer)",
    "load": "the load harness runs the production stack on PostgreSQL + Redis",
    "worker": "connections, pool and index plans are PostgreSQL's; the worker needs Redis",
}
# Suites that drop and recreate the database named in their --database-url: they get a database
# of their own beside the given one (``clinaiops`` → ``clinaiops_wsbench``).
SUITE_DATABASE = {"ws_latency": "wsbench", "alert_load": "alertload"}


def suites_present() -> list[str]:
    names = []
    for path in sorted(BENCH_DIR.glob("*_bench.py")):
        name = path.name.removesuffix("_bench.py")
        if name == "ingest" or "write_section(" in path.read_text():
            names.append(name)
    names += [path.parent.name for path in sorted(BENCH_DIR.glob("*/__main__.py"))]
    return sorted(names, key=lambda name: (name != "ingest", name))


def suite_database_url(suite: str, url: str) -> str:
    """The URL a suite is given: for a suite that recreates its database, one beside ``url``."""
    suffix = SUITE_DATABASE.get(suite)
    if not suffix:
        return url
    parts = urlsplit(url)
    name = parts.path.lstrip("/") or "clinaiops"
    return urlunsplit(parts._replace(path=f"/{name}_{suffix}"))


def run_ingest(args: argparse.Namespace, command: str) -> None:
    from bench import ingest_bench

    section, rows = ingest_bench.run_suite(
        database_url=args.database_url, quick=args.quick, command=command
    )
    write_section("ingest", section)
    write_rows("ingest", rows, command=command)


def run_script(name: str, args: argparse.Namespace) -> None:
    package = BENCH_DIR / name / "__main__.py"
    module = f"bench.{name}" if package.exists() else f"bench.{name}_bench"
    source = (package if package.exists() else BENCH_DIR / f"{name}_bench.py").read_text()
    child = [sys.executable, "-m", module]
    if args.database_url and "--database-url" in source:
        child += ["--database-url", suite_database_url(name, args.database_url)]
    if args.quick and "--quick" in source:
        child.append("--quick")
    subprocess.run(child, cwd=BENCH_DIR.parent, check=True)


def _suite_rows(suite: str, path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [r for r in json.loads(path.read_text()).get("rows", []) if r.get("suite") == suite]


def _not_run(detail: dict) -> bool:
    return isinstance(detail, dict) and ("skipped" in detail or "failed" in detail)


def write_not_run(suite: str, why: str, *, command: str, failed: bool, path: Path | None = None):
    """Replace ``suite``'s rows of results.json by one saying it was not measured in this run
    (``met: null``, ``detail.skipped`` or ``detail.failed``); the figures it measured before
    stay, each with its own date and command, so a reader sees both."""
    path = path or RESULTS_JSON
    earlier = [r for r in _suite_rows(suite, path) if not _not_run(r.get("detail"))]
    key = "failed" if failed else "skipped"
    note = row(f"{suite}: not measured in this run", None, None, detail={key: why})
    write_rows(suite, [*earlier, note], command=command, path=path)


def _figure(value: object) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        magnitude = abs(value)
        if magnitude >= 100:
            return f"{value:,.0f}"
        if magnitude >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    return str(value)


def _verdict(r: dict) -> str:
    detail = r.get("detail")
    if _not_run(detail):
        key = "failed" if "failed" in detail else "skipped"
        return f"{key}: {detail[key]}"
    if r.get("met") is None:
        return "–"
    return "met" if r["met"] else "**not met**"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def headline_section(rows: list[dict]) -> str:
    """The "Headline figures" section: every row of results.json that has a goal or says a suite
    was not measured, in one table; then the goals not met, named."""
    order = {suite: index for index, suite in enumerate(suites_present())}
    shown = [r for r in rows if r.get("goal") is not None or _not_run(r.get("detail"))]
    shown.sort(key=lambda r: order.get(r.get("suite"), len(order)))  # stable: rows keep order
    judged = [r for r in shown if r.get("met") is not None]
    missed = [r for r in judged if r["met"] is False]
    lines = [
        "## Headline figures",
        "",
        "Generated by `python -m bench` from `bench/results.json` (every row with a goal, and "
        "every suite not measured); each figure's own section below says how it was measured. "
        "Dates differ where a suite was not re-run.",
        "",
        f"Goals met: **{len(judged) - len(missed)} of {len(judged)}**.",
        "",
        "| suite | what | value | reference | ratio | goal | met | date |",
        "|---|---|---:|---|---:|---|---|---|",
    ]
    for r in shown:
        value = _figure(r.get("value"))
        if r.get("value") is not None and r.get("unit"):
            value += f" {r['unit']}"
        reference = _figure(r.get("reference"))
        if r.get("reference") is not None and r.get("reference_what"):
            reference += f" ({r['reference_what']})"
        cells = [
            r.get("suite") or "",
            r.get("what") or "",
            value,
            reference,
            "–" if r.get("ratio") is None else f"{r['ratio']:,.2f}",
            r.get("goal") or "",
            _verdict(r),
            (r.get("date") or "")[:10],
        ]
        lines.append("| " + " | ".join(_cell(str(c)) for c in cells) + " |")
    lines += ["", "Goals not met:" if missed else "Goals not met: none."]
    lines += [
        f"- {r['suite']}: {r['what']} — {_figure(r.get('value'))} {r.get('unit') or ''} "
        f"(goal {r['goal']})".replace("  ", " ")
        for r in missed
    ]
    return "\n".join(lines) + "\n"


def write_headline(json_path: Path | None = None, md_path: Path | None = None) -> None:
    """Write the headline section from results.json at the top of RESULTS.md (after its title
    and before the first suite's section), replacing the previous one."""
    json_path, md_path = json_path or RESULTS_JSON, md_path or RESULTS_PATH
    rows = json.loads(json_path.read_text()).get("rows", []) if json_path.exists() else []
    start = f"<!-- {HEADLINE}:start -->"
    text = md_path.read_text() if md_path.exists() else ""
    if start not in text:
        first = re.search(r"^<!-- [\w-]+:start -->$", text, re.MULTILINE)
        placeholder = f"{start}\n<!-- {HEADLINE}:end -->\n\n"
        if first:
            text = text[: first.start()] + placeholder + text[first.start() :]
        else:
            text = (text.rstrip("\n") + "\n\n" if text else "") + placeholder
        md_path.write_text(text)
    write_section(HEADLINE, headline_section(rows), path=md_path)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    present = suites_present()
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run the benchmark suites in bench/; write RESULTS.md and results.json.",
    )
    parser.add_argument("--only", choices=present, action="append", help="run only this suite")
    parser.add_argument(
        "--database-url",
        help="PostgreSQL server: also measure there (each suite in a database of its own)",
    )
    parser.add_argument("--quick", action="store_true", help="short profiles (make bench)")
    args = parser.parse_args(argv)
    if args.database_url and urlsplit(args.database_url).scheme not in {"postgres", "postgresql"}:
        parser.error("--database-url must be a postgres:// URL")
    from bench.ingest_bench import redact

    command = shlex.join(["python", "-m", "bench", *(redact(argument) for argument in argv)])
    failed = []
    for suite in args.only or present:
        if suite in NEEDS_POSTGRESQL and not args.database_url:
            why = f"needs PostgreSQL (--database-url or DATABASE_URL): {NEEDS_POSTGRESQL[suite]}"
            print(f"== {suite}: skipped, {why}", flush=True)
            write_not_run(suite, why, command=command, failed=False)
            continue
        print(f"== {suite}", flush=True)
        try:
            if suite == "ingest":
                run_ingest(args, command)
            else:
                run_script(suite, args)
        except Exception as error:  # recorded; the next suite still runs
            why = (
                f"exit status {error.returncode} (its output above says why)"
                if isinstance(error, subprocess.CalledProcessError)
                else PASSWORD.sub(r"\1***@", f"{type(error).__name__}: {error}")[:300]
            )
            print(f"== {suite} failed: {why}", file=sys.stderr, flush=True)
            write_not_run(suite, why, command=command, failed=True)
            failed.append(suite)
    write_headline()
    print(f"Results in {RESULTS_PATH} and {RESULTS_JSON}")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
