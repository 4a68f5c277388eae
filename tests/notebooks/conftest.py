"""The smoke study, run once per test session and shared by the notebook tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from selfmoa import pipeline
from selfmoa.config import load
from selfmoa.paths import CONFIGS

SMOKE = CONFIGS / "smoke.yaml"


@dataclass(frozen=True)
class SmokeRun:
    """A finished, uninterrupted smoke run: its runs folder, run id, overrides and pipeline summary."""

    runs_dir: Path
    run_id: str
    overrides: list[str]
    summary: dict[str, Any]

    @property
    def run(self) -> Path:
        """The run folder."""
        return self.runs_dir / self.run_id


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    """Every notebook of the smoke profile executed once with papermill (the shared model caches are reused).

    The run folder is the default one (`smoke-seed0`), so the two-seed study test reuses it as its seed 0.
    """
    runs = tmp_path_factory.mktemp("smoke_runs")
    overrides = [f"runs_dir={runs}"]
    run_id = pipeline.default_run_id(load(SMOKE, overrides))
    summary = pipeline.run(SMOKE, run_id, overrides)
    return SmokeRun(runs, run_id, overrides, summary)
