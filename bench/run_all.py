"""Run every benchmark script (bench/bench_*.py) in turn, each in its own process.

    python bench/run_all.py                 # full runs
    python bench/run_all.py --quick         # smoke runs (--quick is passed to every bench)
    python bench/run_all.py --quick wire    # only benches whose name contains "wire"

Each bench prints its own table; this prints a header per bench and a summary, and exits 1 if
any bench exited non-zero (a bench exits non-zero when it is broken, never for a missed target).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent


def discover(patterns: list[str]) -> list[Path]:
    """The bench scripts, sorted by name, keeping those whose name contains any pattern."""
    scripts = sorted(BENCH_DIR.glob("bench_*.py"))
    if patterns:
        scripts = [s for s in scripts if any(p in s.stem for p in patterns)]
    return scripts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run every bench/bench_*.py script in turn.")
    parser.add_argument("--quick", action="store_true", help="pass --quick to every bench")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="run only benches whose file name contains one of these")
    args = parser.parse_args(argv)

    scripts = discover(args.names)
    if not scripts:
        print(f"no bench scripts match {args.names!r} in {BENCH_DIR}", file=sys.stderr)
        return 1
    extra = ["--quick"] if args.quick else []
    results: list[tuple[str, int, float]] = []
    for script in scripts:
        print(f"\n{'=' * 100}\n== {script.name} {' '.join(extra)}\n{'=' * 100}", flush=True)
        started = time.perf_counter()
        code = subprocess.call([sys.executable, str(script), *extra], cwd=REPO)
        elapsed = time.perf_counter() - started
        results.append((script.name, code, elapsed))
        if code != 0:
            print(f"!! {script.name} exited with status {code}", flush=True)

    print(f"\n{'=' * 100}\n== summary")
    for name, code, elapsed in results:
        status = "ok" if code == 0 else f"FAILED (exit {code})"
        print(f"   {name:<32} {elapsed:7.1f} s  {status}")
    failed = [name for name, code, _ in results if code != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
