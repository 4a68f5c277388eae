"""`kill -9` inside stages, then resume: every stage's metrics equal an uninterrupted run's; no temp file is left.

The killed run is the real command line (`selfmoa run`) in its own session; the test sends SIGKILL to its
whole process group, once inside 06_align@0 (during model load / training) and once inside 07b_variants
after its first variant has written its results, then runs the same command again to the end. It shares the
model, generation and judgement caches with the session's uninterrupted smoke run (`smoke_run`), so the
caches must survive the kills too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from selfmoa import artifacts, pipeline, runlock
from selfmoa.config import load
from selfmoa.paths import CONFIGS, ROOT, stage_dir

SMOKE = CONFIGS / "smoke.yaml"
RUN_ID = "killed"
TIMEOUT_S = 900


def is_timing(key: str) -> bool:
    """Wall-time and throughput fields, which differ between identical runs."""
    return "seconds" in key or key.endswith("_s") or key in ("finished_at", "started_at")


def without_timing(value: Any) -> Any:
    """A metrics value with every timing field removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if not is_timing(str(k))}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def stage_results(run: Path, steps: list[pipeline.Step]) -> dict[str, Any]:
    """Per step: metrics without timing fields, and the stage key of its manifest."""
    out = {}
    for step in steps:
        folder = stage_dir(run, step.stage, step.iteration)
        manifest = artifacts.read_manifest(run, step.stage, step.iteration) or {}
        metrics = artifacts.read_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else None
        out[step.label] = {"metrics": without_timing(metrics), "stage_key": manifest.get("stage_key")}
    return out


def _kill_inside(cmd: list[str], log: Path, folder: Path, ready: Any, what: str) -> None:
    """Start `cmd` in a new session, wait until `ready(folder)`, then SIGKILL its whole process group."""
    with open(log, "a") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, start_new_session=True, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ready(folder):
            assert proc.poll() is None, f"the run ended before {what}; log: {log.read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)
        assert not (folder / "manifest.json").exists(), f"too late: {what} had already completed"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def _started_a_while_ago(delay_s: float) -> Any:
    first_seen: dict[str, float] = {}

    def ready(folder: Path) -> bool:
        if folder.is_dir():
            first_seen.setdefault("t", time.monotonic())
        return "t" in first_seen and time.monotonic() - first_seen["t"] >= delay_s

    return ready


def _first_variant_done(folder: Path) -> bool:
    return any(folder.glob("*/result.json"))


@pytest.mark.slow
def test_kill_9_inside_two_stages_then_resume_gives_identical_results(smoke_run: Any, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = runs / RUN_ID
    overrides = [f"runs_dir={runs}"]
    cmd = [sys.executable, "-m", "selfmoa.cli", "run", "--config", str(SMOKE), "--run-id", RUN_ID, "--set", *overrides]
    log = tmp_path / "run.log"
    kills = [
        (stage_dir(run, "06_align", 0), _started_a_while_ago(3.0), "06_align@0"),
        (stage_dir(run, "07b_variants"), _first_variant_done, "07b_variants (one variant done)"),
    ]
    for folder, ready, what in kills:
        _kill_inside(cmd, log, folder, ready, what)
        states = {r["step"]: r["state"] for r in pipeline.status(SMOKE, RUN_ID, overrides)}
        assert states[what.split(" ")[0]] != "complete", f"{what} marked complete by a killed run"

    with open(log, "a") as fh:
        final = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, timeout=TIMEOUT_S)
    assert final.returncode == 0, log.read_text()[-3000:]

    steps = pipeline.plan(load(SMOKE, overrides))
    assert all(r["state"] == "complete" for r in pipeline.status(SMOKE, RUN_ID, overrides))
    resumed, reference = stage_results(run, steps), stage_results(smoke_run.run, steps)
    differing = [label for label in reference if resumed[label] != reference[label]]
    assert not differing, {label: (resumed[label], reference[label]) for label in differing}

    assert runlock.temp_files(run) == []
    leftovers = [p for p in run.rglob("*") if p.name.endswith((".tmp", ".partial", ".incomplete", "~"))]
    assert leftovers == []
    assert runlock.read_holder(run) is None  # the last holder released the lock
