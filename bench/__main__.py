"""``python -m bench [--only SUITE ...] [--database-url URL] [--quick]``: run the benchmark
suites present in ``bench/`` and write their sections of ``bench/RESULTS.md``.

A suite is ``bench/<name>_bench.py`` or a package ``bench/<name>/`` with ``__main__.py`` (the
load harness, ``bench/load``). ``ingest`` runs in-process here (SQLite, plus PostgreSQL
when ``--database-url`` is given). Any other suite is a script with ``main()`` that writes its own
section (it calls ``write_section``); it runs as ``python -m bench.<name>_bench`` with those of
``--database-url`` and ``--quick`` it declares.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

from bench import write_section

BENCH_DIR = Path(__file__).resolve().parent


def suites_present() -> list[str]:
    names = []
    for path in sorted(BENCH_DIR.glob("*_bench.py")):
        name = path.name.removesuffix("_bench.py")
        if name == "ingest" or "write_section(" in path.read_text():
            names.append(name)
    names += [path.parent.name for path in sorted(BENCH_DIR.glob("*/__main__.py"))]
    return sorted(names, key=lambda name: (name != "ingest", name))


def run_ingest(args: argparse.Namespace, command: str) -> None:
    from bench import ingest_bench

    section = ingest_bench.run_suite(
        database_url=args.database_url, quick=args.quick, command=command
    )
    write_section("ingest", section)


def run_script(name: str, args: argparse.Namespace) -> None:
    package = BENCH_DIR / name / "__main__.py"
    module = f"bench.{name}" if package.exists() else f"bench.{name}_bench"
    source = (package if package.exists() else BENCH_DIR / f"{name}_bench.py").read_text()
    child = [sys.executable, "-m", module]
    if args.database_url and "--database-url" in source:
        child += ["--database-url", args.database_url]
    if args.quick and "--quick" in source:
        child.append("--quick")
    subprocess.run(child, cwd=BENCH_DIR.parent, check=True)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    present = suites_present()
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run the benchmark suites in bench/ and write their sections of RESULTS.md.",
    )
    parser.add_argument("--only", choices=present, action="append", help="run only this suite")
    parser.add_argument("--database-url", help="also measure on this PostgreSQL server")
    parser.add_argument("--quick", action="store_true", help="smaller workloads (smoke run)")
    args = parser.parse_args(argv)
    from bench.ingest_bench import redact

    command = shlex.join(["python", "-m", "bench", *(redact(argument) for argument in argv)])
    for suite in args.only or present:
        print(f"== {suite}", flush=True)
        if suite == "ingest":
            run_ingest(args, command)
        else:
            run_script(suite, args)
    print(f"Results in {BENCH_DIR / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
