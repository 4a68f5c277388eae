"""The run plan over the stage DAG (`selfmoa.stages`), and papermill execution of its notebooks.

Stages 00-01 run once, 02-06 once per iteration (each iteration's aligned policy is the next one's
starting policy), 07-08 once at the end. A stage whose manifest matches is skipped without starting a
kernel, so a rerun of a finished run takes seconds. Executed notebooks are written to
`<run>/executed/`.

A multi-seed study (`study`, `selfmoa study --seeds 0 1 2`) runs stages 00-07b for every training seed in
its own run folder (`<profile>-seed<s>`, config override `seed=<s>`), then one 08_report over all of them
in the study folder (`<profile>-study`). The report's stage key covers the 07_evaluate and 07b_variants
keys of every seed run (`report_upstream`), so it recomputes when any of them changes and is skipped when
all match. `selfmoa run` of one seed runs the same report over that one seed, in the run's own folder.
In a study only the report publishes (the seed runs get `publish=false`), so committed results never mix
the last seed's files with the cross-seed ones.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfmoa import config as C
from selfmoa.artifacts import is_complete, read_manifest, write_json
from selfmoa.paths import NOTEBOOKS, resolve_path, run_dir
from selfmoa.stages import (
    LOOP_STAGES,
    ONCE_AFTER,
    ONCE_BEFORE,
    REPORT_STAGE,
    VARIANTS_STAGE,
    report_dependencies,
    seed_run_id,
    study_id,
)

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


def plan(cfg: C.RunConfig, skip: Sequence[str] = (), only: Sequence[str] = ()) -> list[Step]:
    """Every step of a run, in order, restricted to notebooks that exist and to `cfg.stages` if set.

    Args:
        cfg: the run config.
        skip: stages left out (a study's seed runs skip 08_report).
        only: when given, keep only these stages (a study's report folder runs 08_report alone).
    """
    wanted = set(cfg.stages)
    steps = [Step(s, None) for s in ONCE_BEFORE]
    steps += [Step(s, t) for t in range(cfg.iterations) for s in LOOP_STAGES]
    steps += [Step(s, None) for s in ONCE_AFTER]
    return [
        s
        for s in steps
        if notebook_path(s.stage).is_file()
        and (not wanted or s.stage in wanted)
        and s.stage not in skip
        and (not only or s.stage in only)
    ]


def default_run_id(cfg: C.RunConfig) -> str:
    """Run folder name when none is given: <profile>-seed<seed>."""
    return seed_run_id(cfg.profile, cfg.seed)


# Overrides that change where a run is written, or which seeds publish, but never what it computes
# (an explicit `publish` override is the user's decision and ends the check before these are looked at).
NEUTRAL_OVERRIDES = frozenset({"runs_dir", "cache_dir", "publish_seeds"})


def publish_block(cfg: C.RunConfig, overrides: Sequence[str], seeds: Sequence[int]) -> str | None:
    """Why a run of a `publish: true` profile must not publish, or None when nothing stands in the way.

    Committed results come from the profile's reference study only: its own config (overrides of
    `NEUTRAL_OVERRIDES` aside) over exactly `publish_seeds`. A partial or changed run (one seed,
    `--set iterations=0`, another `train.beta`) would otherwise overwrite them with numbers they do not
    describe. An explicit `publish=...` override decides by itself.
    """
    keys = [C.parse_override(o)[0] for o in overrides]
    if not cfg.publish or "publish" in keys:
        return None
    changed = sorted({k for k in keys if k not in NEUTRAL_OVERRIDES})
    if changed:
        return f"the overrides of {', '.join(changed)} change what the run computes"
    if set(seeds) != set(cfg.publish_seeds):
        return f"seeds {list(seeds)} are not the reference study's {list(cfg.publish_seeds)}"
    return None


def publish_guard(config_path: str | Path, overrides: Sequence[str], seeds: Sequence[int] | None = None) -> list[str]:
    """`overrides` plus `publish=false` when `publish_block` names a reason (logged with the way to override it).

    `seeds`: the training seeds the run's report covers (default: the run's own `seed`).
    """
    cfg = C.load(resolve_path(config_path), list(overrides))
    why = publish_block(cfg, overrides, [cfg.seed] if seeds is None else seeds)
    if why is None:
        return list(overrides)
    log.warning(
        "not publishing to data/results/%s/ and figures/: %s (add --set publish=true to publish anyway)",
        cfg.profile,
        why,
    )
    return [*overrides, "publish=false"]


def report_upstream(runs_dir: str | Path, seed_runs: Sequence[str]) -> dict[str, str]:
    """Upstream keys of an 08_report over `seed_runs`: `<k>:<stage>@None` -> stage key ('missing' when absent),
    k = the run's position in `seed_runs`.

    The report stage is opened (`artifacts.open_stage(upstream=...)`) and checked (`artifacts.is_complete`)
    with these keys, so it is complete only when every seed run's 07_evaluate and 07b_variants match. The
    keys name positions, not folders: the same results under another run id give the same report key.
    """
    out = {}
    position = {run_id: k for k, run_id in enumerate(seed_runs)}
    for run_id, stage, it in report_dependencies(list(seed_runs)):
        manifest = read_manifest(run_dir(runs_dir, run_id), stage, it)
        out[f"{position[run_id]}:{stage}@{it}"] = manifest["stage_key"] if manifest else "missing"
    return out


def step_complete(cfg: C.RunConfig, folder: Path, step: Step, seed_runs: Sequence[str]) -> bool:
    """Whether a step's manifest matches what would be computed now (08_report: over `seed_runs`)."""
    upstream = report_upstream(cfg.runs_dir, seed_runs) if step.stage == REPORT_STAGE else None
    return is_complete(cfg, folder, step.stage, step.iteration, upstream=upstream)


def open_report(
    config_path: str | Path,
    run_id: str,
    seed_runs: Sequence[str] = (),
    force: bool = False,
    overrides: list[str] | None = None,
) -> tuple[Any, list[Path]]:
    """Open stage 08_report of `run_id` over `seed_runs` (default: the run itself), keyed by their upstream keys.

    Returns:
        (the `selfmoa.artifacts.StageContext`, the seed runs' folders).

    Raises:
        StageError: a seed run's 07_evaluate or 07b_variants has not completed.
    """
    from selfmoa.artifacts import open_stage
    from selfmoa.stages import StageError

    cfg = C.load(resolve_path(config_path), overrides)
    runs = list(seed_runs) or [run_id]
    upstream = report_upstream(cfg.runs_dir, runs)
    missing = [k for k, v in upstream.items() if v == "missing"]
    if missing:
        raise StageError(f"08_report: {missing} not complete; run the seed runs first (selfmoa run / selfmoa study)")
    ctx = open_stage(config_path, run_id, REPORT_STAGE, force=force, overrides=overrides, upstream=upstream)
    return ctx, [run_dir(cfg.runs_dir, r) for r in runs]


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


def _status_rows(cfg: C.RunConfig, run_id: str, steps: list[Step], seed_runs: Sequence[str]) -> list[dict[str, Any]]:
    run = run_dir(cfg.runs_dir, run_id)
    rows = []
    for step in steps:
        manifest = read_manifest(run, step.stage, step.iteration)
        state = "pending" if manifest is None else ("complete" if step_complete(cfg, run, step, seed_runs) else "stale")
        seconds = manifest["timings"].get("total_s") if manifest else None
        rows.append({"run": run_id, "step": step.label, "state": state, "seconds": seconds})
    return rows


def status(
    config_path: str | Path, run_id: str | None = None, overrides: list[str] | None = None
) -> list[dict[str, Any]]:
    """One row per step: complete (manifest matches), stale (manifest from other settings) or pending."""
    cfg = C.load(resolve_path(config_path), overrides)
    run_id = run_id or default_run_id(cfg)
    return _status_rows(cfg, run_id, plan(cfg), [run_id])


def run(
    config_path: str | Path,
    run_id: str | None = None,
    overrides: list[str] | None = None,
    force: bool = False,
    kernel_name: str = KERNEL_NAME,
    log_output: bool = False,
    skip: Sequence[str] = (),
    only: Sequence[str] = (),
    seed_runs: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Execute every pending step of a run with papermill; return a summary with per-step wall times.

    Args:
        config_path, run_id, overrides: the run (default run id: `default_run_id`).
        force: recompute steps even when complete.
        kernel_name, log_output: papermill's kernel and whether to stream notebook output.
        skip, only: stages left out / kept (`plan`).
        seed_runs: the seed runs 08_report reports on (default: this run alone).
    """
    import papermill as pm

    cfg = C.load(resolve_path(config_path), overrides)
    run_id = run_id or default_run_id(cfg)
    seed_runs = list(seed_runs) if seed_runs else [run_id]
    folder = run_dir(cfg.runs_dir, run_id)
    check_kernel(kernel_name)
    executed = folder / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"run_id": run_id, "config": str(config_path), "steps": []}
    started = time.time()
    for step in plan(cfg, skip, only):
        if not force and step_complete(cfg, folder, step, seed_runs):
            log.info("skip %s (complete)", step.label)
            summary["steps"].append({"step": step.label, "ran": False, "seconds": 0.0})
            continue
        out = executed / f"{step.label.replace('@', '_iter')}.ipynb"
        params: dict[str, Any] = {
            "config_path": str(config_path),
            "run_id": run_id,
            "iteration": step.iteration or 0,
            "force": force,
            "overrides": list(overrides or []),
        }
        if step.stage == REPORT_STAGE:
            params["seed_runs"] = seed_runs
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


# ----------------------------------------------------------------------------------------------- studies


@dataclass(frozen=True)
class SeedRun:
    """One training seed of a study: its run folder and the overrides it runs with."""

    seed: int
    run_id: str
    overrides: tuple[str, ...]


@dataclass(frozen=True)
class StudyPlan:
    """A multi-seed study: the seed runs (stages 00-07b each) and the study folder of the cross-seed report."""

    config_path: str
    study_id: str
    overrides: tuple[str, ...]
    runs: tuple[SeedRun, ...]

    @property
    def seed_runs(self) -> list[str]:
        """Run ids of the seed runs, in seed order."""
        return [r.run_id for r in self.runs]

    @property
    def seeds(self) -> list[int]:
        """The training seeds."""
        return [r.seed for r in self.runs]


def study_plan(
    config_path: str | Path,
    seeds: Sequence[int],
    overrides: Sequence[str] | None = None,
    study: str | None = None,
) -> StudyPlan:
    """The runs of a multi-seed study (no I/O beyond loading the config).

    Args:
        config_path: a YAML profile.
        seeds: training seeds (distinct, >= 0), each run as `<profile>-seed<s>` with `seed=<s>`.
        overrides: config overrides shared by every run and the report.
        study: the study folder (default `<profile>-study`).

    Raises:
        ValueError: no seed, a repeated or negative seed, or a study id equal to a seed run's.
    """
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ValueError("a study needs at least one seed, e.g. --seeds 0 1 2")
    if len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"study seeds must be distinct non-negative integers, got {seeds}")
    shared = tuple(overrides or ())
    cfg = C.load(resolve_path(config_path), list(shared))
    name = study or study_id(cfg.profile)
    runs = tuple(SeedRun(s, seed_run_id(cfg.profile, s), (*shared, f"seed={s}", "publish=false")) for s in seeds)
    run_dir(cfg.runs_dir, name)  # a valid folder name
    if name in {r.run_id for r in runs}:
        raise ValueError(f"study id {name!r} is also a seed run's folder; choose another --study-id")
    return StudyPlan(str(config_path), name, shared, runs)


def study_status(sp: StudyPlan) -> list[dict[str, Any]]:
    """`status` rows of every seed run (stages 00-07b), then the study's report row."""
    rows = []
    for r in sp.runs:
        cfg = C.load(resolve_path(sp.config_path), list(r.overrides))
        rows += _status_rows(cfg, r.run_id, plan(cfg, skip=(REPORT_STAGE,)), [r.run_id])
    cfg = C.load(resolve_path(sp.config_path), list(sp.overrides))
    return rows + _status_rows(cfg, sp.study_id, plan(cfg, only=(REPORT_STAGE,)), sp.seed_runs)


def study(
    sp: StudyPlan, force: bool = False, kernel_name: str = KERNEL_NAME, log_output: bool = False
) -> dict[str, Any]:
    """Run a study: every seed run (00-07b), then one 08_report over all of them in the study folder.

    Holds the study folder's run lock throughout and each seed run's lock while it runs
    (`selfmoa.runlock`). Writes `<study>/study.json`: per seed, the run id, steps run and wall time.
    """
    from selfmoa import runlock

    cfg = C.load(resolve_path(sp.config_path), list(sp.overrides))
    folder = run_dir(cfg.runs_dir, sp.study_id)
    started = time.time()
    out: dict[str, Any] = {"study_id": sp.study_id, "config": sp.config_path, "seeds": sp.seeds, "runs": []}

    def run_one(run_id: str, overrides: Sequence[str], **which: Any) -> dict[str, Any]:
        return run(sp.config_path, run_id, list(overrides), force=force, kernel_name=kernel_name,
                   log_output=log_output, **which)  # fmt: skip

    with runlock.hold(folder):
        # Every seed's loop and evaluation first, then every seed's variants: the headline runs come before the
        # longest and least central stage.
        per_seed: dict[int, dict[str, Any]] = {}
        for phase in ({"skip": (REPORT_STAGE, VARIANTS_STAGE)}, {"only": (VARIANTS_STAGE,)}):
            for r in sp.runs:
                with runlock.hold(run_dir(cfg.runs_dir, r.run_id)):
                    summary = run_one(r.run_id, r.overrides, **phase)
                done = per_seed.setdefault(r.seed, {"seed": r.seed, **summary, "steps": [], "seconds": 0.0})
                done["steps"] += summary["steps"]
                done["seconds"] = round(done["seconds"] + summary["seconds"], 2)
        out["runs"] = [per_seed[r.seed] for r in sp.runs]
        out["report"] = run_one(sp.study_id, sp.overrides, only=(REPORT_STAGE,), seed_runs=sp.seed_runs)
        out["seconds"] = round(time.time() - started, 2)
        write_json(folder / "study.json", out)
    return out
