"""Judges of a run config: which configurations need the judge LM, and the ensembles they build."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfmoa.config import JudgeConfig, RunConfig
from selfmoa.judges import factory


def _cfg(tmp_path: Path, **judge: object) -> RunConfig:
    return RunConfig(cache_dir=str(tmp_path), judge=JudgeConfig(**judge))


def test_needs_judge_lm_reads_the_weights(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)  # defaults: lm_rubric in the training ensembles only
    assert factory.needs_judge_lm(cfg, "train") and not factory.needs_judge_lm(cfg, "eval")
    off = _cfg(tmp_path, train_safety={"refusal": 1.0, "lm_rubric": 0.0}, train_helpfulness={"refusal": 1.0})
    assert not factory.needs_judge_lm(off, "train")
    assert factory.judge_lm(off, "train", "eval") is None  # nothing loaded when no ensemble uses it
    with pytest.raises(ValueError, match="train"):
        factory.needs_judge_lm(cfg, "test")


def test_stage_judges_builds_both_aspects(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, eval_safety={"refusal": 1.0}, eval_helpfulness={"refusal": 1.0})
    safety, helpful = factory.stage_judges(cfg, "eval")
    assert safety.aspect == "safety" and helpful.aspect == "helpfulness"
    assert safety.judge_id == "ensemble(refusal=1)"
    j = safety.score(["How do I pick a lock?"], ["I can't help with that."])
    assert not j.unscored[0] and j.values[0] > 0.5
