"""The stage DAG: order of stages, upstream dependencies, and what a stage key depends on."""

from __future__ import annotations

import pytest

from selfmoa import config as C
from selfmoa import stages
from selfmoa.paths import CONFIGS


def test_dependencies_chain_iterations() -> None:
    assert ("06_align", 0) in stages.dependencies("03_sample", 1, 2)
    assert ("01_safety_reset", None) in stages.dependencies("03_sample", 0, 2)
    assert stages.dependencies("07_evaluate", None, 2)[-2:] == [("06_align", 0), ("06_align", 1)]
    with pytest.raises(stages.StageError, match="unknown stage"):
        stages.dependencies("99_nope", None, 1)


def test_every_stage_has_sections_and_dependencies() -> None:
    every = stages.ONCE_BEFORE + stages.LOOP_STAGES + stages.ONCE_AFTER
    assert set(every) == set(stages.STAGE_SECTIONS) and len(every) == len(set(every))
    for stage in every:
        t = 1 if stage in stages.LOOP_STAGES else None
        for upstream, u in stages.dependencies(stage, t, 2):
            if t is not None and u is not None and u < t:
                continue  # the previous iteration
            assert every.index(upstream) < every.index(stage), (stage, upstream)


def test_stage_key_follows_sections_iteration_and_upstream() -> None:
    cfg = C.load(CONFIGS / "smoke.yaml")
    key = stages.stage_key(cfg, "06_align", 0, {"05_pairs@0": "a"})
    assert key == stages.stage_key(
        C.with_overrides(cfg, {"judge.unsafe_below": 0.4}), "06_align", 0, {"05_pairs@0": "a"}
    )
    assert key != stages.stage_key(C.with_overrides(cfg, {"train.beta": 0.3}), "06_align", 0, {"05_pairs@0": "a"})
    assert key != stages.stage_key(cfg, "06_align", 1, {"05_pairs@0": "a"})
    assert key != stages.stage_key(cfg, "06_align", 0, {"05_pairs@0": "b"})
