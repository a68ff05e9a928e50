"""Benchmarks of ClinAIOps (``python -m bench``); results go to ``bench/RESULTS.md``.

Each suite owns one section of RESULTS.md between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` and replaces only that block, so suites run separately keep each other's
results.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

RESULTS_PATH = Path(__file__).resolve().parent / "RESULTS.md"
RESULTS_JSON = Path(__file__).resolve().parent / "results.json"
# The stable names of a row of results.json, in this order (``detail`` holds a figure's working).
ROW_KEYS = (
    "suite",
    "what",
    "value",
    "unit",
    "reference",
    "reference_what",
    "ratio",
    "goal",
    "met",
    "machine",
    "date",
    "command",
    "detail",
)
RESULTS_HEADER = (
    "# Benchmark results\n\n"
    "Written by `python -m bench` (see bench/README.md); each section is replaced by its own "
    "suite.\n"
)


def write_section(name: str, body: str, path: Path = RESULTS_PATH) -> None:
    """Replace the ``name`` block of RESULTS.md with ``body`` (appended when absent)."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text() if path.exists() else RESULTS_HEADER
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def row(
    what: str,
    value: float | int | None,
    unit: str | None,
    *,
    reference: float | int | None = None,
    reference_what: str | None = None,
    goal: str | None = None,
    met: bool | None = None,
    detail: object = None,
    ratio: float | None = None,
) -> dict:
    """One figure for results.json; the ratio is value ÷ reference unless given."""
    if ratio is None and isinstance(reference, int | float) and reference and value is not None:
        ratio = round(value / reference, 3)
    return {
        "what": what,
        "value": value,
        "unit": unit,
        "reference": reference,
        "reference_what": reference_what,
        "ratio": ratio,
        "goal": goal,
        "met": met,
        "detail": detail,
    }


def machine_line(facts: dict[str, str] | None = None) -> str:
    facts = facts or machine_facts()
    return f"{facts['nproc']} cores ({facts['cpu']}), {facts['os']}, Python {facts['python']}"


def write_rows(
    suite: str,
    rows: list[dict],
    *,
    command: str,
    date: str | None = None,
    machine: str | None = None,
    path: Path | None = None,
) -> None:
    """Replace ``suite``'s rows of results.json (``{"rows": [...]}``) with ``rows``, each stamped
    with the suite, machine, date and command; other suites' rows are kept."""
    path = path or RESULTS_JSON
    existing: list[dict] = []
    if path.exists():
        try:
            loaded = json.loads(path.read_text())
            existing = loaded.get("rows", []) if isinstance(loaded, dict) else list(loaded)
        except (json.JSONDecodeError, AttributeError):
            existing = []
    stamp = {
        "suite": suite,
        "machine": machine or machine_line(),
        "date": date or datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
    }
    new = [{key: {**stamp, **r}.get(key) for key in ROW_KEYS} for r in rows]
    kept = [r for r in existing if r.get("suite") != suite]
    path.write_text(json.dumps({"rows": kept + new}, indent=2, ensure_ascii=False) + "\n")


def machine_facts() -> dict[str, str]:
    """What a reader needs to compare two runs: cores, CPU, OS, Python."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count()),
        "cpu": cpu or platform.processor() or "unknown",
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
    }


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile by nearest rank below (p95 of 300 samples: the 285th smallest)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1)))]


def embedded_django(data_dir: str, **environment: str) -> None:
    """Django on the embedded stack (SQLite in ``data_dir``, no Redis), migrated, for a bench
    that measures in-process; ``environment`` adds settings read from the environment."""
    os.environ["CLINAIOPS_DATA_DIR"] = data_dir
    for name in ("DATABASE_URL", "REDIS_URL", "OIDC_ISSUER"):
        os.environ.pop(name, None)
    os.environ.update(environment)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clinaiops.settings")
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
