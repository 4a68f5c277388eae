"""Run the benchmarks and merge their records into benchmarks/results.json.

    python -m benchmarks.run                          # precision, generation, frozen_head, decoders, training, judging, e2e
    python -m benchmarks.run --only judging,training  # some of them
    python -m benchmarks.run --only e2e_cpu           # the full cpu profile end to end (hours; never by default)
    python -m benchmarks.run --only e2e_study_cpu     # `make study` (cpu, seeds 0 1 2) end to end (hours)
    python -m benchmarks.run --quick                  # tiny sizes, written to a temporary file unless --output

Each record says the load average before and after its benchmark: figures taken on a busy machine are
lower than the machine can do.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_PATH, loadavg, run_meta, timed, write_results

log = logging.getLogger("benchmarks")

# benchmark name -> (module, function); the default set leaves out e2e_cpu and e2e_study_cpu (hours)
BENCHMARKS: dict[str, tuple[str, str]] = {
    "generation": ("benchmarks.generation", "run"),
    "frozen_head": ("benchmarks.frozen_head", "run"),
    "decoders": ("benchmarks.decoders", "run"),
    "precision": ("benchmarks.precision", "run"),
    "training": ("benchmarks.training", "run"),
    "judging": ("benchmarks.judging", "run"),
    "e2e": ("benchmarks.e2e", "run_smoke"),
    "e2e_cpu": ("benchmarks.e2e", "run_cpu"),
    "e2e_study_cpu": ("benchmarks.study", "run"),
}
DEFAULT = ("precision", "generation", "frozen_head", "decoders", "training", "judging", "e2e")
QUICK_OUTPUT = Path(tempfile.gettempdir()) / "selfmoa-benchmarks-quick.json"


def parse_names(text: str | None) -> list[str]:
    """Names from a comma-separated --only value (None = the default set), validated, in the given order."""
    if text is None:
        return list(DEFAULT)
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown or not names:
        raise SystemExit(f"--only: unknown or empty benchmark name(s) {unknown}; known: {', '.join(BENCHMARKS)}")
    return list(dict.fromkeys(names))


def run_one(name: str, quick: bool) -> dict[str, Any]:
    """Run one benchmark and add wall time, load averages and the quick flag to its record."""
    module, func = BENCHMARKS[name]
    before = loadavg()
    rec, seconds = timed(getattr(importlib.import_module(module), func), quick)
    return {**rec, "quick": quick, "wall_s": seconds, "loadavg_before": before, "loadavg_after": loadavg()}


def summary_line(name: str, rec: dict[str, Any]) -> str:
    """One human-readable line per record."""

    def fmt(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.4g}"

    met = {True: "met", False: "NOT met", None: "no target"}[rec["met"]]
    return (
        f"{name}: baseline {fmt(rec['baseline'])} | project {fmt(rec['project'])} {rec['unit']} | "
        f"ratio {fmt(rec['ratio'])} ({rec['ratio_definition']}) | {met}"
    )


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--only", metavar="NAME[,NAME]", help=f"benchmarks to run (known: {', '.join(BENCHMARKS)})")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, for development and tests")
    parser.add_argument("--output", type=Path, help=f"results file (default {RESULTS_PATH}; --quick: {QUICK_OUTPUT})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    names = parse_names(args.only)
    output = args.output or (QUICK_OUTPUT if args.quick else RESULTS_PATH)
    meta = run_meta()
    for name in names:
        log.info("benchmark %s%s (load average %s)", name, " (quick)" if args.quick else "", loadavg())
        rec = run_one(name, args.quick)
        write_results(output, meta, {name: rec})
        print(summary_line(name, rec), flush=True)
    print(f"results: {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
