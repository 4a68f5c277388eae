"""The multi-seed study plan: which runs, which overrides, and the cross-seed report's stage key."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfmoa import artifacts, pipeline, stages
from selfmoa import config as C
from selfmoa.paths import CONFIGS

SMOKE = CONFIGS / "smoke.yaml"


def fake_manifest(runs: Path, run_id: str, stage: str, key: str) -> None:
    """A finished stage as far as manifests go (the report's key reads only `stage_key`)."""
    artifacts.write_json(runs / run_id / stage / "manifest.json", {"stage": stage, "stage_key": key, "timings": {}})


def test_study_plan_names_one_run_per_seed_and_a_study_folder(tmp_path: Path) -> None:
    sp = pipeline.study_plan(SMOKE, [0, 2, 1], [f"runs_dir={tmp_path}"])
    assert sp.study_id == "smoke-study"
    assert sp.seed_runs == ["smoke-seed0", "smoke-seed2", "smoke-seed1"] and sp.seeds == [0, 2, 1]
    for r in sp.runs:
        assert r.overrides == (f"runs_dir={tmp_path}", f"seed={r.seed}", "publish=false")
        cfg = C.load(SMOKE, list(r.overrides))
        assert cfg.seed == r.seed and pipeline.default_run_id(cfg) == r.run_id and not cfg.publish
    assert pipeline.study_plan(SMOKE, [3], study="mine").study_id == "mine"


@pytest.mark.parametrize(
    ("seeds", "study", "match"),
    [
        ([], None, "at least one seed"),
        ([1, 1], None, "distinct"),
        ([-1], None, "non-negative"),
        ([0], "smoke-seed0", "also a seed run"),
        ([0], "../x", "plain folder name"),
    ],  # fmt: skip
)
def test_study_plan_rejects_bad_seeds_and_ids(seeds: list[int], study: str | None, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        pipeline.study_plan(SMOKE, seeds, study=study)


def test_seed_runs_skip_the_report_and_the_study_runs_only_the_report() -> None:
    cfg = C.load(SMOKE)
    full = [s.stage for s in pipeline.plan(cfg)]
    seed_steps = [s.stage for s in pipeline.plan(cfg, skip=(stages.REPORT_STAGE,))]
    assert full[-1] == "08_report" and "08_report" not in seed_steps and seed_steps == full[:-1]
    assert [s.stage for s in pipeline.plan(cfg, only=(stages.REPORT_STAGE,))] == ["08_report"]


def test_report_key_covers_every_seed_run_and_recomputes_when_one_changes(tmp_path: Path) -> None:
    overrides = [f"runs_dir={tmp_path}"]
    cfg = C.load(SMOKE, overrides)
    seed_runs = ["smoke-seed0", "smoke-seed1"]
    up = pipeline.report_upstream(tmp_path, seed_runs)
    assert set(up) == {f"{k}:{s}@None" for k in (0, 1) for s in ("07_evaluate", "07b_variants")}
    assert set(up.values()) == {"missing"}
    with pytest.raises(stages.StageError, match="not complete"):
        pipeline.open_report(SMOKE, "smoke-study", seed_runs, overrides=overrides)
    for r in seed_runs:
        for s in stages.REPORT_INPUTS:
            fake_manifest(tmp_path, r, s, f"{r}-{s}-a")
    ctx, dirs = pipeline.open_report(SMOKE, "smoke-study", seed_runs, overrides=overrides)
    assert dirs == [tmp_path / r for r in seed_runs] and not ctx.complete
    assert ctx.upstream == pipeline.report_upstream(tmp_path, seed_runs)
    ctx.finish({"n_seeds": 2})
    report_step = pipeline.Step("08_report", None)
    study = tmp_path / "smoke-study"
    assert pipeline.step_complete(cfg, study, report_step, seed_runs)
    assert not pipeline.step_complete(cfg, study, report_step, seed_runs[:1])  # another seed list, another key
    fake_manifest(tmp_path, "smoke-seed1", "07b_variants", "changed")  # one seed run's upstream changes
    assert not pipeline.step_complete(cfg, study, report_step, seed_runs)
    ctx, _ = pipeline.open_report(SMOKE, "smoke-study", seed_runs, overrides=overrides)
    assert not ctx.complete and not (study / "08_report" / "manifest.json").exists()


def test_single_run_report_is_keyed_by_its_own_run(tmp_path: Path) -> None:
    overrides = [f"runs_dir={tmp_path}"]
    for s in stages.REPORT_INPUTS:
        fake_manifest(tmp_path, "solo", s, f"{s}-k")
    ctx, dirs = pipeline.open_report(SMOKE, "solo", [], overrides=overrides)
    assert dirs == [tmp_path / "solo"] and set(ctx.upstream) == {"0:07_evaluate@None", "0:07b_variants@None"}
    for s in stages.REPORT_INPUTS:  # the same results in another folder: the same report key
        fake_manifest(tmp_path, "renamed", s, f"{s}-k")
    assert pipeline.open_report(SMOKE, "renamed", [], overrides=overrides)[0].key == ctx.key


def test_study_status_lists_every_seed_run_then_the_report(tmp_path: Path) -> None:
    sp = pipeline.study_plan(SMOKE, [0, 1], [f"runs_dir={tmp_path}"])
    rows = pipeline.study_status(sp)
    assert [r["run"] for r in rows if r["step"] == "08_report"] == ["smoke-study"]
    assert {r["run"] for r in rows} == {"smoke-seed0", "smoke-seed1", "smoke-study"}
    assert all(r["state"] == "pending" for r in rows)
    assert rows[-1]["step"] == "08_report"


def test_report_dependencies_reject_no_or_repeated_runs() -> None:
    with pytest.raises(stages.StageError, match="at least one"):
        stages.report_dependencies([])
    with pytest.raises(stages.StageError, match="twice"):
        stages.report_dependencies(["a", "a"])


def test_cli_status_shows_the_study_and_study_rejects_bad_seeds(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from selfmoa import cli

    assert cli.main(["status", "--config", str(SMOKE), "--seeds", "0", "1", "--set", f"runs_dir={tmp_path}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["smoke-seed0", "00_setup", "pending"]
    assert lines[-1].split()[:3] == ["smoke-study", "08_report", "pending"]
    assert cli.main(["study", "--config", str(SMOKE), "--seeds", "1", "1"]) == 2
    assert "distinct" in capsys.readouterr().err


CPU = CONFIGS / "cpu.yaml"


@pytest.mark.parametrize(
    ("overrides", "seeds", "publishes"),
    [
        ([], [0, 1, 2], True),  # the reference study
        (["runs_dir=/tmp/x", "cache_dir=/tmp/c"], [2, 1, 0], True),  # where it is written does not matter
        ([], [0], False),  # one seed of it
        ([], None, False),  # `selfmoa run`: the run's own seed
        (["iterations=0"], [0, 1, 2], False),  # a partial run
        (["train.beta=0.2"], [0, 1, 2], False),  # another setting
        (["iterations=0", "publish=true"], [0], True),  # an explicit choice stands
        (["publish_seeds=[0]"], None, True),
    ],  # fmt: skip
)
def test_only_the_reference_study_publishes(overrides: list[str], seeds: list[int] | None, publishes: bool) -> None:
    guarded = pipeline.publish_guard(CPU, overrides, seeds)
    assert guarded[: len(overrides)] == overrides
    assert C.load(CPU, guarded).publish is publishes


def test_a_profile_that_does_not_publish_is_left_alone() -> None:
    assert pipeline.publish_guard(SMOKE, ["iterations=0"], [0]) == ["iterations=0"]


def test_the_cli_passes_the_guarded_overrides_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from selfmoa import cli

    seen: list[tuple[str, ...]] = []

    def study(sp: pipeline.StudyPlan, **kw: object) -> dict[str, object]:
        seen.append(sp.overrides)
        return {"runs": [], "report": {"steps": []}, "seconds": 0.0}

    monkeypatch.setattr(pipeline, "study", study)
    assert cli.main(["study", "--config", str(CPU), "--seeds", "0", "--set", f"runs_dir={tmp_path}"]) == 0
    assert seen == [(f"runs_dir={tmp_path}", "publish=false")]
