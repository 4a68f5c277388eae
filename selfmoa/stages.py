"""The study's stage DAG: which stages run when, what each reads from the config and from upstream stages.

Stages 00-01 run once, 02-06 once per loop iteration (each iteration's aligned policy is the next one's
starting policy), 07-08 once at the end. A multi-seed study runs 00-07b once per training seed, each in its
own run folder, and one 08_report over all of them in a study folder (`seed_run_id`, `study_id`). A stage's
*key* hashes the config sections it reads, its
iteration and the keys of the upstream stages it consumed, so a change reaches exactly the stages that
depend on it. `selfmoa.pipeline` runs the DAG; `selfmoa.artifacts` stores the keys in manifests.
"""

from __future__ import annotations

from typing import Any

from selfmoa import config as C

ONCE_BEFORE = ("00_setup", "01_safety_reset")
LOOP_STAGES = ("02_redteam", "03_sample", "04_judge", "05_pairs", "06_align")
ONCE_AFTER = ("07_evaluate", "07b_variants", "08_report")

# Config sections each stage reads (upstream changes reach it through the upstream keys).
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "00_setup": ("policy",),
    "01_safety_reset": ("policy", "reset", "judge", "sampling", "seed"),
    "02_redteam": ("attacker", "redteam", "sampling", "judge", "seed"),
    "03_sample": ("sampling", "seed"),
    "04_judge": ("judge",),
    "05_pairs": ("pairs", "judge", "sampling", "seed"),
    "06_align": ("train", "seed"),
    "07_evaluate": ("eval", "judge", "iterations", "capability"),
    "07b_variants": ("study", "train", "pairs", "judge", "eval", "seed"),
    "08_report": (),
}


REPORT_STAGE = "08_report"
VARIANTS_STAGE = "07b_variants"
# What 08_report reads from every seed run it reports on.
REPORT_INPUTS: tuple[str, ...] = ("07_evaluate", "07b_variants")


class StageError(RuntimeError):
    """A stage cannot run (missing upstream output, bad parameters); the message names the fix."""


def dependencies(stage: str, iteration: int | None, iterations: int) -> list[tuple[str, int | None]]:
    """Upstream (stage, iteration) pairs whose outputs a stage reads: the study's DAG."""
    t = iteration or 0
    prev_policy: tuple[str, int | None] = ("06_align", t - 1) if t > 0 else ("01_safety_reset", None)
    table: dict[str, list[tuple[str, int | None]]] = {
        "00_setup": [],
        "01_safety_reset": [("00_setup", None)],
        "02_redteam": [prev_policy] + ([("02_redteam", t - 1)] if t > 0 else []),
        "03_sample": [("02_redteam", t), prev_policy],
        "04_judge": [("03_sample", t)],
        "05_pairs": [("04_judge", t), prev_policy],
        "06_align": [("05_pairs", t), prev_policy],
        "07_evaluate": [("01_safety_reset", None)] + [("06_align", i) for i in range(iterations)],
        "07b_variants": [("07_evaluate", None)] + ([("04_judge", 0), ("05_pairs", 0)] if iterations else []),
        "08_report": [("07_evaluate", None), ("07b_variants", None)],
    }
    if stage not in table:
        raise StageError(f"unknown stage {stage!r}; stages: {sorted(table)}")
    return table[stage]


def stage_sections(cfg: C.RunConfig, stage: str) -> dict[str, Any]:
    """The config values a stage depends on (`config.key_dict`: unchanged late-added fields left out)."""
    full = C.key_dict(cfg)
    return {k: full[k] for k in STAGE_SECTIONS.get(stage, tuple(full))}


def stage_key(cfg: C.RunConfig, stage: str, iteration: int | None, upstream: dict[str, str]) -> str:
    """Hash of what determines a stage's outputs: its config sections, iteration and upstream keys."""
    return C.config_hash(
        {"stage": stage, "iteration": iteration, "config": stage_sections(cfg, stage), "upstream": upstream}
    )


def seed_run_id(profile: str, seed: int) -> str:
    """Run folder of one training seed: <profile>-seed<seed> (also `selfmoa run`'s default)."""
    return f"{profile}-seed{seed}"


def study_id(profile: str) -> str:
    """Folder of a multi-seed study's cross-seed report: <profile>-study."""
    return f"{profile}-study"


def report_dependencies(seed_runs: list[str]) -> list[tuple[str, str, None]]:
    """(run id, stage, iteration) of every output 08_report reads: 07_evaluate and 07b_variants of each seed run.

    Raises:
        StageError: no seed run, or a run named twice.
    """
    if not seed_runs:
        raise StageError("08_report needs at least one seed run (parameter seed_runs)")
    if len(set(seed_runs)) != len(seed_runs):
        raise StageError(f"08_report: seed_runs names a run twice: {seed_runs}")
    return [(run_id, stage, None) for run_id in seed_runs for stage in REPORT_INPUTS]
