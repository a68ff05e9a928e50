"""Benchmarks of ClinAIOps (``python -m bench``); results go to ``bench/RESULTS.md``.

Each suite owns one section of RESULTS.md between ``<!-- NAME:start -->`` and
``<!-- NAME:end -->`` and replaces only that block, so suites run separately keep each other's
results.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path

RESULTS_PATH = Path(__file__).resolve().parent / "RESULTS.md"
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
