"""End to end: wall time and peak memory of `selfmoa run` on a profile, then of a rerun of the finished run.

The run goes into a fresh temporary folder, with `publish=false` so that committed results are never
overwritten: `runs_dir` and `cache_dir` are overridden, so no generation,
judgement or embedding-judge cache from earlier runs is reused. Only the materialized model checkpoint is
shared (a symlink to the repository's `data/cache/models`, created first if missing), so the one-off GGUF
conversion is not counted. The rerun uses the same folders: every stage is complete and skipped.

Peak RSS is the summed RSS of the `selfmoa` process and all its descendants (the papermill kernels),
sampled every 0.2 s (`PeakRSS`, which leaves out the benchmark process itself); the kernel's getrusage maximum over waited-for children is recorded too.
Each stage's own peak (its kernel, or the largest process it started) is read from its manifest
(`first_run_step_peak_rss_gib`), so the record says which stage sets the peak.
Targets: rerun / first <= 5%; smoke first run <= 300 s; peak RSS <= 4 GiB.
`e2e_cpu` runs the reference `cpu` profile (hours on 2 cores); it is never part of the default set.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import CACHE_DIR, PeakRSS, check, record, timed
from selfmoa.artifacts import read_manifest
from selfmoa.paths import ROOT

GIB = 1 << 30
RUN_ID = "bench"


def selfmoa_command(config: str, runs_dir: Path, cache_dir: Path, extra: tuple[str, ...] = ()) -> list[str]:
    """The `selfmoa run` command line for a fresh run folder (same interpreter as the benchmark)."""
    sets = [f"runs_dir={runs_dir}", f"cache_dir={cache_dir}", *extra]
    return [sys.executable, "-m", "selfmoa.cli", "run", "--config", config, "--run-id", RUN_ID] + [
        a for s in sets for a in ("--set", s)
    ]


def measured_run(cmd: list[str], log_path: Path) -> dict[str, Any]:
    """Run `cmd` to completion; wall seconds and peak RSS of its process tree. Raises with the log tail on failure."""
    with log_path.open("w") as log, PeakRSS(include_root=False) as rss:  # the command's tree, not this process
        proc, seconds = timed(subprocess.run, cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"`{' '.join(cmd)}` failed with exit code {proc.returncode}; log {log_path}:\n{tail}")
    return {"seconds": seconds, "peak_rss_bytes": rss.peak_bytes, "children_maxrss_bytes": rss.children_maxrss_bytes}


def _model_cache(cache_dir: Path) -> None:
    """Share the materialized model checkpoint with the fresh cache folder."""
    from selfmoa.models import materialize_embedded

    models = materialize_embedded(CACHE_DIR).parent
    cache_dir.mkdir(parents=True)
    (cache_dir / "models").symlink_to(models, target_is_directory=True)


def step_manifest(run: Path, label: str) -> dict[str, Any]:
    """The stage manifest of a step label such as `03_sample@1` in a run folder ({} when there is none)."""
    stage, _, it = label.partition("@")
    return read_manifest(run, stage, int(it) if it else None) or {}


def recorded_peak_gib(manifest: dict[str, Any]) -> float | None:
    """The peak RSS (GiB) a stage manifest recorded: its kernel's or that of the largest process it started
    (None for manifests written before `peak_rss_gib` existed)."""
    rss = manifest.get("peak_rss_gib") or {}
    if rss.get("self") is None:
        return None
    return max(rss["self"], rss.get("children") or 0.0)


def step_peaks_gib(run: Path, steps: list[dict[str, Any]]) -> dict[str, float | None]:
    """The recorded peak RSS (GiB) of every step of a finished run, by step label (which stage sets the peak)."""
    return {step["step"]: recorded_peak_gib(step_manifest(run, step["step"])) for step in steps}


def headline(summary: dict[str, Any]) -> dict[str, Any]:
    """The headline of a run's `summary.json` (to compare a fresh run with the committed reference run).

    Older summaries' metric names are read as today's (`selfmoa.evaluation.canonical_names`).
    """
    from selfmoa.evaluation import canonical_names

    summary = canonical_names(summary)
    keys = ("safety_gain_points", "over_refusal_change_points", "helpfulness_change", "pairs_ratio_static_over_selfmoa")
    models = {
        name: {k: m[k] for k in ("safety", "safety_ci", "over_refusal", "helpfulness")}
        for name, m in summary["models"].items()
    }
    return {**{k: summary.get(k) for k in keys}, "models": models}


def run_profile(config: str, quick: bool, max_first_s: float | None) -> dict[str, Any]:
    """First run and rerun of `config` in a fresh folder (`quick`: only the 00_setup stage)."""
    tmp = Path(tempfile.mkdtemp(prefix="selfmoa-bench-e2e-"))
    runs_dir, cache_dir = tmp / "runs", tmp / "cache"
    _model_cache(cache_dir)
    # publish=false: a benchmark run never overwrites the committed results and figures
    extra = ("publish=false",) + (("stages=[00_setup]",) if quick else ())
    cmd = selfmoa_command(config, runs_dir, cache_dir, extra)
    first = measured_run(cmd, tmp / "first.log")
    steps = json.loads((runs_dir / RUN_ID / "pipeline.json").read_text())["steps"]
    step_peaks = step_peaks_gib(runs_dir / RUN_ID, steps)
    summary_path = runs_dir / RUN_ID / "08_report" / "summary.json"
    fresh = headline(json.loads(summary_path.read_text())) if summary_path.is_file() else None
    rerun = measured_run(cmd, tmp / "rerun.log")
    rerun.pop("children_maxrss_bytes")  # getrusage keeps the maximum over the process's life: the first run's
    shutil.rmtree(tmp)
    ratio = rerun["seconds"] / first["seconds"]
    peak = max(first["peak_rss_bytes"], rerun["peak_rss_bytes"])
    checks = [check("rerun / first", ratio, "<=", 0.05)]
    if max_first_s is not None:
        checks.append(check("first run seconds", first["seconds"], "<=", max_first_s))
    checks.append(check("peak RSS GiB", peak / GIB, "<=", 4.0))
    details = {
        "config": config,
        "stages": "00_setup only (quick)" if quick else "all",
        "command": "selfmoa run --config CONFIG --run-id bench --set runs_dir=TMP/runs --set cache_dir=TMP/cache",
        "first": first,
        "rerun": rerun,
        "peak_rss_gib": peak / GIB,
        "first_run_steps": steps,
        "first_run_step_peak_rss_gib": step_peaks,
        "fresh_run_headline": fresh,
    }
    return record(
        baseline=first["seconds"],
        project=rerun["seconds"],
        ratio=ratio,
        ratio_definition="rerun (all stages cached) / first run wall seconds",
        unit="s",
        checks=checks,
        details=details,
    )


def run_smoke(quick: bool = False) -> dict[str, Any]:
    """The smoke profile end to end (target <= 300 s on 2 CPU cores)."""
    return run_profile("configs/smoke.yaml", quick, max_first_s=300.0)


def run_cpu(quick: bool = False) -> dict[str, Any]:
    """The reference cpu profile end to end (no wall-time target; hours on 2 CPU cores)."""
    return run_profile("configs/cpu.yaml", quick, max_first_s=None)
