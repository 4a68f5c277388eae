"""End to end: wall time and peak memory of a multi-seed study (`selfmoa study --seeds ...`, what `make study` runs).

`run` measures a fresh study in a temporary folder (`publish=false`, fresh runs and caches, the materialized model
shared as in `benchmarks.e2e`): the `cpu` profile for seeds 0, 1 and 2 (hours on 2 cores; never part of the default
set), or with `quick` the smoke profile for seeds 0 and 1. `study_record` turns a study's own `study.json` (per seed
and stage wall seconds) into a record, so the reference study itself can be recorded without running it twice:

    python -m benchmarks.study --record data/runs/cpu-study --peak-rss-gib 2.9

A study resumed after an interruption records 0 s for the steps it skipped; `--record` reads their seconds from
the stage manifests instead (`with_recorded_seconds`), so the figure is the sum of every stage's own time.

Targets (issue: a 3-seed `cpu` study within an afternoon): at most 90 min, peak RSS at most 4 GiB.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_PATH, check, record, run_meta, write_results
from benchmarks.e2e import GIB, _model_cache, measured_run, recorded_peak_gib, step_manifest

NAME = "e2e_study_cpu"
MAX_MINUTES = 90.0


def study_command(config: str, seeds: list[int], runs_dir: Path, cache_dir: Path) -> list[str]:
    """The `selfmoa study` command line for fresh folders (same interpreter as the benchmark)."""
    sets = [f"runs_dir={runs_dir}", f"cache_dir={cache_dir}", "publish=false"]
    cmd = [sys.executable, "-m", "selfmoa.cli", "study", "--config", config, "--seeds", *map(str, seeds)]
    return cmd + [a for s in sets for a in ("--set", s)]


def study_steps(study: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(run id, step) for every step of every seed run, then of the report."""
    for part in study["runs"] + [study["report"]]:
        for step in part["steps"]:
            yield part.get("run_id", ""), step


def stage_minutes(study: dict[str, Any]) -> dict[str, float]:
    """Wall minutes per stage (loop stages summed over rounds) over every seed run and the report."""
    out: dict[str, float] = defaultdict(float)
    for _, step in study_steps(study):
        out[step["step"].split("@")[0]] += step["seconds"] / 60
    return {k: round(v, 2) for k, v in sorted(out.items())}


def with_recorded_seconds(study: dict[str, Any], runs_dir: Path) -> dict[str, Any]:
    """`study` with the wall seconds of every step that a resumed study skipped, read from its stage manifest.

    A resumed `make study` runs only the unfinished steps and records 0 s for the rest; each finished stage's
    manifest keeps the seconds it took when it ran (`timings.total_s`, without the notebook kernel's start-up).
    The sums then replace the runs' and the study's wall seconds; `resumed` says how many steps were filled in.
    """

    def fill(run_id: str, part: dict[str, Any]) -> dict[str, Any]:
        steps = []
        for step in part["steps"]:
            if not step["ran"]:
                manifest = step_manifest(runs_dir / run_id, step["step"])
                step = {**step, "seconds": float(manifest.get("timings", {}).get("total_s") or 0.0)}
            steps.append(step)
        return {**part, "steps": steps, "seconds": round(sum(s["seconds"] for s in steps), 2)}

    resumed = sum(not step["ran"] for _, step in study_steps(study))
    if not resumed:
        return study
    runs = [fill(r["run_id"], r) for r in study["runs"]]
    report = fill(study["report"]["run_id"], study["report"])
    total = round(sum(r["seconds"] for r in runs) + report["seconds"], 2)
    return {**study, "runs": runs, "report": report, "seconds": total, "resumed": resumed}


def manifest_peak_rss(study: dict[str, Any], runs_dir: Path) -> tuple[float | None, int]:
    """The largest peak RSS (GiB) that the study's stage manifests recorded (a stage's kernel or a process it
    started), and how many stages recorded one (manifests written before `peak_rss_gib` existed have none)."""
    peaks = [recorded_peak_gib(step_manifest(runs_dir / run_id, step["step"])) for run_id, step in study_steps(study)]
    peaks = [p for p in peaks if p is not None]
    return (max(peaks) if peaks else None), len(peaks)


def study_record(study: dict[str, Any], peak_rss_bytes: int | None, how: str) -> dict[str, Any]:
    """A benchmark record of a finished study from its `study.json` (`selfmoa.pipeline.study`).

    Args:
        study: the parsed `study.json`.
        peak_rss_bytes: peak resident memory, as measured by `how` (None when not measured).
        how: how the study was run and its memory measured (goes into the details).
    """
    minutes = study["seconds"] / 60
    checks = [check("study minutes", minutes, "<=", MAX_MINUTES)]
    checks.append(check("peak RSS GiB", None if peak_rss_bytes is None else peak_rss_bytes / GIB, "<=", 4.0))
    details = {
        "config": study["config"],
        "seeds": study["seeds"],
        "how": how,
        "minutes_per_seed": {str(r["seed"]): round(r["seconds"] / 60, 2) for r in study["runs"]},
        "report_minutes": round(study["report"]["seconds"] / 60, 2),
        "minutes_per_stage": stage_minutes(study),
        "peak_rss_gib": None if peak_rss_bytes is None else peak_rss_bytes / GIB,
        "steps_from_manifests": study.get("resumed", 0),
    }
    return record(
        baseline=None,
        project=minutes,
        ratio=None,
        ratio_definition="none (wall minutes of the whole study)",
        unit="min",
        checks=checks,
        details=details,
    )


def run(quick: bool = False) -> dict[str, Any]:
    """A fresh study, measured: `cpu` seeds 0-2, or with `quick` the smoke profile's seeds 0-1."""
    config, seeds = ("configs/smoke.yaml", [0, 1]) if quick else ("configs/cpu.yaml", [0, 1, 2])
    tmp = Path(tempfile.mkdtemp(prefix="selfmoa-bench-study-"))
    runs_dir, cache_dir = tmp / "runs", tmp / "cache"
    _model_cache(cache_dir)
    measured = measured_run(study_command(config, seeds, runs_dir, cache_dir), tmp / "study.log")
    profile = Path(config).stem
    study = json.loads((runs_dir / f"{profile}-study" / "study.json").read_text())
    shutil.rmtree(tmp)
    how = "benchmarks.study.run: fresh folders, publish=false; peak RSS summed over the process tree (0.2 s samples)"
    return study_record(study, measured["peak_rss_bytes"], how)


def main(argv: list[str] | None = None) -> int:
    """`--record DIR`: merge the record of the finished study in DIR into benchmarks/results.json."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.study", description=__doc__.splitlines()[0])
    parser.add_argument("--record", type=Path, required=True, help="a study folder holding study.json")
    parser.add_argument("--peak-rss-gib", type=float, help="peak RSS measured while the study ran")
    parser.add_argument("--how", default="the reference `make study` run; peak RSS: getrusage of its largest process")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    path = args.record / "study.json"
    if not path.is_file():
        raise SystemExit(f"{path}: no study.json; run `make study` (or `selfmoa study`) first")
    study = json.loads(path.read_text())
    recorded, n_recorded = manifest_peak_rss(study, args.record.parent)
    gib = args.peak_rss_gib if args.peak_rss_gib is not None else recorded
    how = f"{args.how}; {n_recorded} stage manifests recorded a peak RSS (largest {recorded} GiB)"
    rec = study_record(with_recorded_seconds(study, args.record.parent), None if gib is None else int(gib * GIB), how)
    write_results(args.output, run_meta(), {NAME: rec})
    print(f"{NAME}: {rec['project']:.1f} min, met: {rec['met']}; results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
