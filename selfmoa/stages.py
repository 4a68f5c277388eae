"""The study's stage DAG: which stages run when, what each reads from the config and from upstream stages.

Stages 00-01 run once, 02-06 once per loop iteration (each iteration's aligned policy is the next one's
starting policy), 07-08 once at the end. A stage's *key* hashes the config sections it reads, its
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
    "07_evaluate": ("eval", "judge", "iterations"),
    "07b_variants": ("study", "train", "pairs", "judge", "eval", "seed"),
    "08_report": (),
}


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
