"""Run every notebook with papermill on the smoke profile, then check resume skips all of them."""

from pathlib import Path

import pytest

from selfmoa import artifacts, pipeline
from selfmoa.config import load
from selfmoa.paths import CONFIGS


@pytest.mark.slow
def test_smoke_study_runs_and_resumes(tmp_path: Path) -> None:
    overrides = [f"runs_dir={tmp_path}"]
    first = pipeline.run(CONFIGS / "smoke.yaml", "smoke", overrides)
    cfg = load(CONFIGS / "smoke.yaml", overrides)
    steps = pipeline.plan(cfg)
    assert [s["step"] for s in first["steps"]] == [s.label for s in steps]
    assert all(s["ran"] for s in first["steps"])
    run = tmp_path / "smoke"
    for step in steps:
        manifest = artifacts.read_manifest(run, step.stage, step.iteration)
        assert manifest is not None, step.label
        assert (run / "executed" / f"{step.label.replace('@', '_iter')}.ipynb").is_file()
    assert all(r["state"] == "complete" for r in pipeline.status(CONFIGS / "smoke.yaml", "smoke", overrides))
    second = pipeline.run(CONFIGS / "smoke.yaml", "smoke", overrides)
    assert not any(s["ran"] for s in second["steps"])
    assert second["seconds"] < 0.05 * first["seconds"] + 5
