"""A two-seed smoke study: seed 0 is the session's smoke run (reused, nothing reruns), seed 1 runs 00-07b, then
one cross-seed 08_report in the study folder; a second `study` call skips everything."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd
import pytest

from selfmoa import artifacts, pipeline
from selfmoa.config import load
from selfmoa.paths import CONFIGS

SMOKE = CONFIGS / "smoke.yaml"


@pytest.mark.slow
def test_two_seed_smoke_study_reports_every_seed_and_set(smoke_run: Any) -> None:
    sp = pipeline.study_plan(SMOKE, [0, 1], smoke_run.overrides)
    assert sp.seed_runs == [smoke_run.run_id, "smoke-seed1"]
    t0 = time.time()
    out = pipeline.study(sp)
    first_s = time.time() - t0
    seed0, seed1 = out["runs"]
    assert not any(s["ran"] for s in seed0["steps"])  # the session's smoke run is seed 0
    assert all(s["ran"] for s in seed1["steps"]) and "08_report" not in [s["step"] for s in seed1["steps"]]
    assert [(s["step"], s["ran"]) for s in out["report"]["steps"]] == [("08_report", True)]

    report = smoke_run.runs_dir / sp.study_id / "08_report"
    summary = artifacts.read_json(report / "summary.json")
    cfg = load(SMOKE, smoke_run.overrides)
    assert summary["seeds"] == [0, 1] and summary["n_seeds"] == 2 and list(summary["per_seed"]) == ["0", "1"]
    assert set(summary["per_set"]) == set(summary["eval_sets"]) == set(cfg.eval.harmful_sets + cfg.eval.benign_sets)
    for name in ("safety_gain_points", "over_refusal_change_points", "helpfulness_change"):
        g = summary["gains"][name]
        assert sorted(g["per_seed"]) == ["0", "1"] and g["ci"][0] <= g["mean"] <= g["ci"][1]
        assert summary[name] == pytest.approx(g["mean"], abs=0.01)
    for m in summary["models"].values():
        assert 0.0 <= m["safety_ci"][0] <= m["safety"] <= m["safety_ci"][1] <= 1.0
    cap = summary["capability"]
    assert set(cap["metric_by_task"]) == set(cfg.capability.tasks)
    assert {"base", "selfmoa"} <= set(cap["models"]) and set(cap["change_vs_base"]["selfmoa"]) == set(
        cfg.capability.tasks
    )
    by_set = pd.read_csv(report / "eval_by_set.csv", dtype={"seed": str})
    assert set(by_set["seed"]) == {"0", "1", "mean"}
    for fig in ("per_set", "seed_spread", "loop_curves", "capability", "heldout_models"):
        assert (report / "figures" / f"{fig}.png").is_file(), fig
    assert "seed 1" in (report / "tables.md").read_text()

    assert all(r["state"] == "complete" for r in pipeline.study_status(sp))
    t1 = time.time()
    again = pipeline.study(sp)
    assert not any(s["ran"] for r in again["runs"] for s in r["steps"]) and not again["report"]["steps"][0]["ran"]
    print(f"two-seed study: {first_s:.0f}s (seed 1: {seed1['seconds']:.0f}s, report: "
          f"{out['report']['seconds']:.0f}s); rerun {time.time() - t1:.1f}s")  # fmt: skip
