"""The run plan over the stage DAG (`selfmoa.stages`), and papermill execution of its notebooks.

Stages 00-01 run once, 02-06 once per iteration (each iteration's aligned policy is the next one's
starting policy), 07-08 once at the end. A stage whose manifest matches is skipped without starting a
kernel, so a rerun of a finished run takes seconds. Executed notebooks are written to
`<run>/executed/`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfmoa import config as C
from selfmoa.artifacts import is_complete, read_manifest, write_json
from selfmoa.paths import NOTEBOOKS, resolve_path, run_dir
from selfmoa.stages import LOOP_STAGES, ONCE_AFTER, ONCE_BEFORE

log = logging.getLogger(__name__)

KERNEL_NAME = "selfmoa"


@dataclass(frozen=True)
class Step:
    """One notebook execution: a stage, at an iteration for loop stages."""

    stage: str
    iteration: int | None

    @property
    def label(self) -> str:
        """Human-readable name, e.g. 03_sample@1."""
        return self.stage if self.iteration is None else f"{self.stage}@{self.iteration}"


def notebook_path(stage: str) -> Path:
    """The source notebook of a stage."""
    return NOTEBOOKS / f"{stage}.ipynb"


def plan(cfg: C.RunConfig) -> list[Step]:
    """Every step of a run, in order, restricted to notebooks that exist and to `cfg.stages` if set."""
    wanted = set(cfg.stages)
    steps = [Step(s, None) for s in ONCE_BEFORE]
    steps += [Step(s, t) for t in range(cfg.iterations) for s in LOOP_STAGES]
    steps += [Step(s, None) for s in ONCE_AFTER]
    return [s for s in steps if notebook_path(s.stage).is_file() and (not wanted or s.stage in wanted)]


def default_run_id(cfg: C.RunConfig) -> str:
    """Run folder name when none is given: <profile>-seed<seed>."""
    return f"{cfg.profile}-seed{cfg.seed}"


def check_kernel(kernel_name: str) -> None:
    """Fail early, with the fix, when the Jupyter kernel is not installed."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(kernel_name)
    except NoSuchKernel:
        raise RuntimeError(
            f"Jupyter kernel {kernel_name!r} is not installed: run `make setup` or "
            f"`python -m ipykernel install --sys-prefix --name {kernel_name}`"
        ) from None


def status(
    config_path: str | Path, run_id: str | None = None, overrides: list[str] | None = None
) -> list[dict[str, Any]]:
    """One row per step: complete (manifest matches), stale (manifest from other settings) or pending."""
    cfg = C.load(resolve_path(config_path), overrides)
    run = run_dir(cfg.runs_dir, run_id or default_run_id(cfg))
    rows = []
    for step in plan(cfg):
        manifest = read_manifest(run, step.stage, step.iteration)
        state = (
            "pending"
            if manifest is None
            else ("complete" if is_complete(cfg, run, step.stage, step.iteration) else "stale")
        )
        seconds = manifest["timings"].get("total_s") if manifest else None
        rows.append({"step": step.label, "state": state, "seconds": seconds})
    return rows


def run(
    config_path: str | Path,
    run_id: str | None = None,
    overrides: list[str] | None = None,
    force: bool = False,
    kernel_name: str = KERNEL_NAME,
    log_output: bool = False,
) -> dict[str, Any]:
    """Execute every pending step of a run with papermill; return a summary with per-step wall times."""
    import papermill as pm

    cfg = C.load(resolve_path(config_path), overrides)
    run_id = run_id or default_run_id(cfg)
    folder = run_dir(cfg.runs_dir, run_id)
    check_kernel(kernel_name)
    executed = folder / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"run_id": run_id, "config": str(config_path), "steps": []}
    started = time.time()
    for step in plan(cfg):
        if not force and is_complete(cfg, folder, step.stage, step.iteration):
            log.info("skip %s (complete)", step.label)
            summary["steps"].append({"step": step.label, "ran": False, "seconds": 0.0})
            continue
        out = executed / f"{step.label.replace('@', '_iter')}.ipynb"
        params = {
            "config_path": str(config_path),
            "run_id": run_id,
            "iteration": step.iteration or 0,
            "force": force,
            "overrides": list(overrides or []),
        }
        log.info("run %s -> %s", step.label, out)
        t0 = time.time()
        pm.execute_notebook(
            str(notebook_path(step.stage)),
            str(out),
            parameters=params,
            kernel_name=kernel_name,
            cwd=str(NOTEBOOKS.parent),
            log_output=log_output,
            progress_bar=False,
        )
        summary["steps"].append({"step": step.label, "ran": True, "seconds": round(time.time() - t0, 2)})
    summary["seconds"] = round(time.time() - started, 2)
    write_json(folder / "pipeline.json", summary)
    return summary
