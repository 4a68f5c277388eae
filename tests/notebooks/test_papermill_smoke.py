"""Run every notebook with papermill on the smoke profile, then check resume skips all of them."""

from typing import Any

import pytest

from selfmoa import artifacts, pipeline
from selfmoa.config import load
from selfmoa.paths import CONFIGS

SMOKE = CONFIGS / "smoke.yaml"


@pytest.mark.slow
def test_smoke_study_runs_and_resumes(smoke_run: Any) -> None:
    """`smoke_run` (tests/notebooks/conftest.py) is the session's uninterrupted smoke run."""
    first, overrides, run = smoke_run.summary, smoke_run.overrides, smoke_run.run
    steps = pipeline.plan(load(SMOKE, overrides))
    assert [s["step"] for s in first["steps"]] == [s.label for s in steps]
    assert all(s["ran"] for s in first["steps"])
    for step in steps:
        manifest = artifacts.read_manifest(run, step.stage, step.iteration)
        assert manifest is not None, step.label
        assert (run / "executed" / f"{step.label.replace('@', '_iter')}.ipynb").is_file()
    assert all(r["state"] == "complete" for r in pipeline.status(SMOKE, smoke_run.run_id, overrides))
    second = pipeline.run(SMOKE, smoke_run.run_id, overrides)
    assert not any(s["ran"] for s in second["steps"])
    assert second["seconds"] < 0.05 * first["seconds"] + 5
