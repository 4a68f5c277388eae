"""Study variants (plan, pairs, data-efficiency ratio) and the report's pure summary functions."""

from __future__ import annotations

import pandas as pd
import pytest

from selfmoa import config as C
from selfmoa import plotting, report, variants
from selfmoa.paths import CONFIGS
from selfmoa.report import variants_frame

# A study section with every kind of variant, so that these tests do not depend on what the cpu profile runs.
FULL_STUDY = {
    "static_sizes": [50, 200],
    "label_noise": [0.2, 0.4],
    "objective_ablations": True,
    "schedule_sizes": [40],
    "static_schedule_sizes": [16, 66],
    "loop_weights": [0.0, 2.0],
    "loop_variant_seeds": [0, 1],
}


def _cfg(**study: object) -> C.RunConfig:
    values = FULL_STUDY | study
    return C.with_overrides(C.load(CONFIGS / "cpu.yaml"), {f"study.{k}": v for k, v in values.items()})


def test_plan_covers_every_group_and_skips_the_loops_own_setting() -> None:
    plan = variants.plan(
        _cfg(weight_sweep=[0.0, 1.0, 2.0], helpful_sweep=[0.5], label_noise=[0.0, 0.2], selfmoa_sizes=[25])
    )
    names = [v.name for v in plan]
    assert {v.group for v in plan} == set(variants.GROUPS)
    assert "ws1_wh1" not in names  # train.w_safety = w_helpful = 1 is round 1 of the loop itself
    assert {"ws0_wh1", "ws2_wh1", "ws1_wh0.5", "safety_only", "helpfulness_only", "noise0.2"} <= set(names)
    assert "noise0" not in names and len(names) == len(set(names))
    assert next(v for v in plan if v.name == "safety_only").overrides == {
        "pairs.order": "safety",
        "train.w_safety": 0.0,
    }


def test_plan_without_loop_or_disabled() -> None:
    assert variants.plan(_cfg(enabled=False)) == []
    no_loop = C.with_overrides(_cfg(), {"iterations": 0})
    assert {v.group for v in variants.plan(no_loop)} == {"static"}


def test_variant_config_validates_overrides() -> None:
    v = variants.Variant("x", "weights", "loop_pairs", {"train.w_safety": -1.0})
    with pytest.raises(C.ConfigError, match="train.w_safety"):
        variants.variant_config(_cfg(), v)
    with pytest.raises(ValueError, match="group"):
        variants.Variant("x", "other", "static")


def _judged() -> list[dict]:
    rows = []
    for i in range(6):
        rows += [
            {"prompt": f"harm {i}", "response": f"unsafe {i}", "kind": "harmful", "safety": 0.1, "helpfulness": 0.8},
            {"prompt": f"harm {i}", "response": f"safe {i}", "kind": "harmful", "safety": 0.9, "helpfulness": 0.5},
            {"prompt": f"ok {i}", "response": f"answer {i}", "kind": "benign", "safety": 1.0, "helpfulness": 0.9},
        ]
    return [{**r, "refused": False, "sample": 0, "category": None} for r in rows]


def test_variant_pairs_sources() -> None:
    cfg = _cfg()
    curated = [
        {"id": str(i), "prompt": f"p{i}", "kind": ("harmful", "benign")[i % 2], "answer": "a"} for i in range(10)
    ]
    static = variants.variant_pairs(variants.Variant("s", "static", "static", n_pairs=4), cfg, curated=curated)
    assert len(static) == 4 and variants.source_counts(static) == {"benign/curated": 2, "harmful/curated": 2}
    loop_pairs = [{"prompt_kind": "harmful", "source": "sampled", "i": i} for i in range(5)]
    sub = variants.variant_pairs(variants.Variant("d", "data", "loop_pairs", n_pairs=3), cfg, loop_pairs=loop_pairs)
    assert len(sub) == 3 and all(p in loop_pairs for p in sub)
    clean = variants.variant_pairs(variants.Variant("n0", "noise", "repaired"), cfg, judged=_judged())
    noisy_v = variants.Variant("n", "noise", "repaired", {"judge.label_noise": 0.5})
    noisy = variants.variant_pairs(noisy_v, variants.variant_config(cfg, noisy_v), judged=_judged(), seed=3)
    assert variants.source_counts(clean)["harmful/sampled"] == 6
    assert noisy != clean  # flipped safety decisions change which answers are chosen
    with pytest.raises(ValueError, match="no training pair"):
        variants.variant_pairs(variants.Variant("e", "data", "loop_pairs"), cfg)


def test_pairs_to_reach_and_ratio() -> None:
    static = [(0, 0.1), (50, 0.3), (100, 0.5), (200, 0.9)]
    selfmoa = [(0, 0.1), (20, 0.5)]
    assert variants.pairs_to_reach(static, 0.5) == 100
    assert variants.pairs_to_reach(static, 0.7) == pytest.approx(150)
    assert variants.pairs_to_reach(static, 0.95) is None
    assert variants.pairs_to_reach([(10, 0.8)], 0.5) == 10
    r = variants.pairs_ratio(static, selfmoa)
    assert r["ratio"] == pytest.approx(5.0) and r["target_safety"] == 0.5
    never = variants.pairs_ratio([(0, 0.1), (100, 0.2)], selfmoa)
    assert never["ratio"] is None and never["lower_bound"] == pytest.approx(5.0) and "never" in never["note"]
    assert variants.pairs_ratio([], selfmoa)["ratio"] is None


def _m(s: float, o: float = 0.1, h: float = 0.5) -> dict:
    return {"safety": s, "safety_ci": [s - 0.1, s + 0.1], "over_refusal": o, "over_refusal_ci": [0, o + 0.1],
            "helpfulness": h, "helpfulness_ci": [h - 0.1, h + 0.1]}  # fmt: skip


def _doc() -> dict:
    def v(name: str, group: str, n: int, s: float, noise: float = 0.0) -> dict:
        return {"name": name, "group": group, "n_pairs": n, "w_safety": 1.0, "w_helpful": 1.0, "label_noise": noise,
                "metrics": _m(s)}  # fmt: skip

    return {
        "reference": {"base": {**_m(0.1), "n_pairs": 0}, "selfmoa_round1": {**_m(0.6), "n_pairs": 40, "label_noise": 0.0}},
        "variants": [v("static_dpo_n50", "static", 50, 0.3), v("static_dpo_n200", "static", 200, 0.7),
                     v("selfmoa_n20", "data", 20, 0.4), v("noise0.2", "noise", 40, 0.5, 0.2),
                     v("safety_only", "objective", 30, 0.8)],
    }  # fmt: skip


def test_report_models_curves_and_summary() -> None:
    evaluated = {"base": _m(0.1), "iter1": _m(0.6), "iter2": _m(0.7, o=0.2, h=0.45)}
    models = report.loop_models(evaluated, [{"n_pairs": 40}, {"n_pairs": 30}])
    assert models["selfmoa"]["n_pairs"] == 70 and models["selfmoa_iter1"]["n_pairs"] == 40
    models |= report.variant_models(_doc()["variants"])
    assert models["static_dpo"]["n_pairs"] == 200 and "safety_only" in models
    frame = variants_frame(_doc(), {"selfmoa": models["selfmoa"]})
    assert set(frame["group"]) == {"base", "loop", "static", "data", "noise", "objective"}
    curves = report.efficiency_curves(frame)
    one_round = curves[curves["curve"] == report.ONE_ROUND_CURVES[0]]
    assert list(one_round["n_pairs"]) == [0, 20, 40]  # base, subsample, round 1: not the loop's final policy
    assert set(curves["curve"]) == {*report.ONE_ROUND_CURVES, report.SELFMOA_CURVE}  # no static schedule here
    ratio = report.pairs_ratio_from_curves(curves)
    assert ratio["ratio"] is None and "schedule_sizes" in ratio["note"]  # one-round curves are not compared
    noise = pd.DataFrame(report.sweep_table(frame, ["noise"]))
    assert list(noise["name"]) == ["selfmoa_round1", "noise0.2"]
    s = report.summary("cpu", "policy", {"a": 1}, models, ratio)
    assert s["safety_gain_points"] == pytest.approx(60.0) and s["over_refusal_change_points"] == pytest.approx(10.0)
    assert s["helpfulness_change"] == pytest.approx(-0.05) and s["pairs_ratio_static_over_selfmoa"] == ratio["ratio"]
    assert set(s["models"]["base"]) == set(report.POINT_KEYS)


def test_markdown_tables() -> None:
    rows = [{"name": "a", "safety": 0.5, "safety_lo": 0.4, "safety_hi": 0.6, "n_pairs": None}]
    table = report.markdown_table(rows, {"name": "model", "safety": "safety", "n_pairs": "pairs"})
    assert table.splitlines() == ["| model | safety | pairs |", "|---|---|---|", "| a | 0.500 [0.400, 0.600] | - |"]
    loop_row = {"iteration": 0, "redteam_asr": 0.9, "attack_diversity": 0.8, "n_pairs": 10,
                "pairs_by_source": {"sampled": 6, "self_revision": 1, "template": 3}, "heldout_after": _m(0.4)}  # fmt: skip
    line = report.loop_markdown([loop_row]).splitlines()[-1]
    assert line.startswith("| 1 | 0.900 | 0.800 | 10 (6 / 1 / 3) | 0.400 [0.300, 0.500]")


def test_spread_positions_keeps_order_gap_and_bounds() -> None:
    ys = [0.5, 0.51, 0.49, 0.1, 0.99, 0.5]
    got = plotting.spread_positions(ys, gap=0.05, lo=0.0, hi=1.0)
    ranked = sorted(range(len(ys)), key=lambda i: ys[i])
    assert [got[i] for i in ranked] == sorted(got)  # same order as the values
    assert all(b - a >= 0.05 - 1e-12 for a, b in zip(sorted(got), sorted(got)[1:], strict=False))
    assert 0.0 <= min(got) and max(got) <= 1.0
    assert got[3] == pytest.approx(0.1)  # a point with room keeps its own height
    crowded = plotting.spread_positions([0.5] * 30, gap=0.05)  # cannot fit at 0.05: the gap shrinks
    assert len(set(crowded)) == 30 and max(crowded) <= 1.0 and min(crowded) >= 0.0


def test_pareto_labels_do_not_overlap() -> None:
    import matplotlib
    from matplotlib.text import Text

    matplotlib.use("Agg")
    doc = _doc()
    # several points on top of one another: the case that made point labels collide
    doc["variants"] += [
        {"name": f"ws{w}_wh1", "group": "weights", "n_pairs": 40, "w_safety": w, "w_helpful": 1.0,
         "label_noise": 0.0, "metrics": _m(0.6 + 0.001 * w)} for w in (0.0, 0.5, 2.0, 4.0)
    ]  # fmt: skip
    fig = plotting.plot_pareto(variants_frame(doc))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    boxes = [Text.get_window_extent(t, renderer) for t in ax.texts]  # the label alone, without its line
    assert len(boxes) == 9  # base, selfmoa_round1, two static, safety_only, four weights
    overlaps = [(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1 :] if a.overlaps(b)]
    assert not overlaps


# ---- the loop's schedule: plan, static schedule, keys, run plan and resume ----


def test_schedule_plan_sizes_weights_and_seeds() -> None:
    cfg = _cfg(
        schedule_sizes=[16, 40, 600], static_schedule_sizes=[], loop_weights=[0.0, 1.0, 2.0], loop_variant_seeds=[0, 1]
    )
    names = [v.name for v in variants.schedule_plan(cfg)]
    assert names == ["static_sched_n16", "selfmoa_cap16", "static_sched_n40", "selfmoa_cap40", "static_sched_n600",
                     "loop_ws0", "loop_ws2"]  # fmt: skip
    # a cap at or above pairs.max_pairs (512) is the main run itself; w_s = train.w_safety too
    by_name = {v.name: v for v in variants.plan(cfg)}
    assert by_name["selfmoa_cap16"].overrides == {"pairs.max_pairs": 16} and by_name["selfmoa_cap16"].on_schedule
    assert by_name["loop_ws0"].overrides == {"train.w_safety": 0.0} and by_name["static_sched_n40"].n_pairs == 40
    assert not by_name["static_dpo_n50"].on_schedule
    assert variants.schedule_plan(C.with_overrides(cfg, {"seed": 2})) == []  # seed not in loop_variant_seeds
    assert variants.schedule_plan(C.with_overrides(cfg, {"iterations": 0})) == []
    assert variants.schedule_plan(_cfg(schedule_sizes=[8])) != []  # empty seed list = every seed
    static_only = [
        v.name
        for v in variants.schedule_plan(_cfg(schedule_sizes=[40], static_schedule_sizes=[16, 66], loop_weights=[]))
    ]
    assert static_only == ["static_sched_n16", "static_sched_n40", "selfmoa_cap40", "static_sched_n66"]
    with pytest.raises(ValueError, match="loop's schedule"):
        variants.variant_pairs(by_name["static_sched_n16"], cfg, curated=[])


def _pool(n_harm: int, n_benign: int) -> list[dict]:
    rows = [{"prompt": f"h{i}", "prompt_kind": "harmful"} for i in range(n_harm)]
    return rows + [{"prompt": f"b{i}", "prompt_kind": "benign"} for i in range(n_benign)]


def test_static_schedule_rounds_disjoint_and_shares() -> None:
    pool = _pool(100, 100)
    rounds, info = variants.static_schedule(pool, rounds=3, per_round=40, seed=1)
    assert [len(r) for r in rounds] == [40, 40, 40] and info["disjoint"] and info["reused"] == 0
    seen = [p["prompt"] for r in rounds for p in r]
    assert len(seen) == len(set(seen)) == 120  # no pair in two rounds
    for r in rounds:  # every round keeps the pool's 50/50 harmful/benign shares
        assert abs(sum(p["prompt_kind"] == "harmful" for p in r) - 20) <= 1
    assert variants.static_schedule(pool, 3, 40, seed=1)[0] == rounds  # seeded
    assert variants.static_schedule(pool, 3, 40, seed=2)[0] != rounds


def test_static_schedule_wraps_only_after_using_every_pair() -> None:
    pool = _pool(6, 4)
    rounds, info = variants.static_schedule(pool, rounds=3, per_round=4, seed=0)
    assert not info["disjoint"] and info["reused"] == 2 and info["pool"] == 10
    used = [p["prompt"] for r in rounds for p in r]
    assert set(used[:10]) == {p["prompt"] for p in pool}  # the first 10 uses cover the pool once
    assert all(len({p["prompt"] for p in r}) == 4 for r in rounds)  # no repeat inside a round
    with pytest.raises(ValueError, match="schedule_sizes"):
        variants.static_schedule(pool, rounds=2, per_round=11)
    with pytest.raises(ValueError, match="rounds"):
        variants.static_schedule(pool, rounds=0, per_round=2)


def test_variant_key_tracks_the_variant_not_the_study_list() -> None:
    cfg = _cfg(schedule_sizes=[16], loop_weights=[0.0])
    v = next(v for v in variants.plan(cfg) if v.name == "loop_ws0")
    key = variants.variant_key(cfg, "07b_variants", {"07_evaluate@None": "k"}, v)
    more = _cfg(schedule_sizes=[16, 40], loop_weights=[0.0, 2.0], label_noise=[0.1])
    assert variants.variant_key(more, "07b_variants", {"07_evaluate@None": "k"}, v) == key
    assert variants.variant_key(cfg, "07b_variants", {"07_evaluate@None": "other"}, v) != key
    redteam = C.with_overrides(cfg, {"redteam.n_attacks": 7})  # loop variants depend on the loop's sections
    assert variants.variant_key(redteam, "07b_variants", {"07_evaluate@None": "k"}, v) != key
    static = next(v for v in variants.plan(cfg) if v.name == "static_dpo_n50")
    assert variants.variant_key(redteam, "07b_variants", {}, static) == variants.variant_key(
        cfg, "07b_variants", {}, static
    )


def test_capability_only_for_each_curves_largest_size_behind_two_switches() -> None:
    cfg = _cfg(schedule_sizes=[16, 40], static_schedule_sizes=[8])
    plan = {v.name: v for v in variants.plan(cfg)}
    assert not variants.capability_wanted(cfg, plan["static_sched_n40"])  # variant_capability off by default
    on = C.with_overrides(cfg, {"study.variant_capability": True})
    wanted = sorted(n for n, v in plan.items() if variants.capability_wanted(on, v))
    assert wanted == ["selfmoa_cap40", "static_sched_n40"]
    assert not variants.capability_wanted(C.with_overrides(on, {"capability.enabled": False}), plan["selfmoa_cap40"])


def _finish_stage(cfg: C.RunConfig, run, stage: str, it: int | None) -> None:
    from selfmoa import artifacts, stages
    from selfmoa.paths import stage_dir

    folder = stage_dir(run, stage, it)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "out.txt").write_text(f"{stage}@{it}")
    upstream = artifacts.upstream_keys(run, stages.dependencies(stage, it, cfg.iterations))
    key = stages.stage_key(cfg, stage, it, upstream)
    artifacts.write_json(folder / "manifest.json", {"stage_key": key, "upstream": upstream})


def _main_run(tmp_path) -> tuple[C.RunConfig, object]:
    from selfmoa.stages import LOOP_STAGES, ONCE_BEFORE

    cfg = C.with_overrides(_cfg(), {"iterations": 2, "runs_dir": str(tmp_path)})
    run = tmp_path / "main"
    for stage in ONCE_BEFORE:
        _finish_stage(cfg, run, stage, None)
    for t in range(2):
        for stage in LOOP_STAGES:
            _finish_stage(cfg, run, stage, t)
    return cfg, run


def test_loop_variant_reuses_the_main_runs_shared_prefix(tmp_path) -> None:
    from selfmoa import variant_runs

    cfg, run = _main_run(tmp_path)
    cap = C.with_overrides(cfg, {"pairs.max_pairs": 8})  # 05_pairs reads `pairs`: round 0 diverges there
    assert [s for s, _ in variant_runs.shared_steps(cap, run)] == [
        "00_setup", "01_safety_reset", "02_redteam", "03_sample", "04_judge"]  # fmt: skip
    ws = C.with_overrides(cfg, {"train.w_safety": 0.0})  # 06_align reads `train`
    assert variant_runs.shared_steps(ws, run)[-1] == ("05_pairs", 0)
    sub = tmp_path / "main--selfmoa_cap8"
    copied = variant_runs.link_shared(cap, run, sub)
    assert copied == ["00_setup", "01_safety_reset", "02_redteam@0", "03_sample@0", "04_judge@0"]
    assert (sub / "iter0" / "04_judge" / "out.txt").read_text() == "04_judge@0"
    assert not (sub / "iter0" / "05_pairs").exists()
    from selfmoa.artifacts import is_complete

    assert is_complete(cap, sub, "04_judge", 0) and not is_complete(cap, sub, "05_pairs", 0)
    assert variant_runs.link_shared(cap, run, sub) == []  # resumed: nothing copied twice
    other_seed = C.with_overrides(cfg, {"seed": 3})  # the reset reads `seed`: no start to share
    with pytest.raises(RuntimeError, match="01_safety_reset"):
        variant_runs.link_shared(other_seed, run, tmp_path / "x")


def test_loop_overrides_limit_the_subrun_to_the_loop() -> None:
    from selfmoa import variant_runs

    v = variants.Variant("loop_ws0", "loop_weights", "loop", {"train.w_safety": 0.0})
    got = variant_runs.loop_overrides(v, ["runs_dir=/x", "seed=1"])
    cfg = C.load(CONFIGS / "smoke.yaml", got)
    assert cfg.train.w_safety == 0.0 and cfg.seed == 1 and not cfg.publish
    assert cfg.stages == ["02_redteam", "03_sample", "04_judge", "05_pairs", "06_align"]
    assert variant_runs.subrun_id("cpu-seed1", v) == "cpu-seed1--loop_ws0"


def test_run_all_skips_finished_variants_and_resumes_the_rest(tmp_path, monkeypatch) -> None:
    from types import SimpleNamespace

    from selfmoa import artifacts, variant_runs

    cfg = C.with_overrides(_cfg(schedule_sizes=[8]), {"runs_dir": str(tmp_path)})
    plan = [v for v in variants.plan(cfg) if v.name in ("static_dpo_n50", "static_sched_n8")]
    run = tmp_path / "main"
    ctx = SimpleNamespace(cfg=cfg, run=run, stage="07b_variants", upstream={"a": "b"}, complete=False,
                          path=lambda name: run / "07b_variants" / name)  # fmt: skip
    key = variants.variant_key(cfg, "07b_variants", ctx.upstream, plan[0])
    artifacts.write_json(ctx.path(plan[0].name) / "result.json", {"key": key, "name": plan[0].name})
    artifacts.write_json(ctx.path(plan[1].name) / "result.json", {"key": "stale", "name": plan[1].name})
    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        name = cmd[cmd.index("--name") + 1]
        v = next(v for v in plan if v.name == name)
        artifacts.write_json(
            ctx.path(name) / "result.json", {"key": variants.variant_key(cfg, ctx.stage, ctx.upstream, v), "name": name}
        )
        return SimpleNamespace(returncode=0, stderr="")

    monkeypatch.setattr(variant_runs.subprocess, "run", fake_run)
    results = variant_runs.run_all(ctx, plan, "configs/cpu.yaml", ["seed=0"])
    assert [r["name"] for r in results] == ["static_dpo_n50", "static_sched_n8"]
    assert len(calls) == 1 and calls[0][-2:] == ["--name", "static_sched_n8"]  # only the stale one ran
    assert calls[0][calls[0].index("--set") + 1] == "seed=0" and "variant" in calls[0]
    assert variant_runs.run_all(ctx, plan, "configs/cpu.yaml") and len(calls) == 1  # all finished: no process

    def failing(cmd, **kw):
        return SimpleNamespace(returncode=3, stderr="boom")

    monkeypatch.setattr(variant_runs.subprocess, "run", failing)
    with pytest.raises(RuntimeError, match="static_dpo_n50 failed .exit 3.:\nboom"):
        variant_runs.run_all(ctx, plan, "configs/cpu.yaml", force=True)
    assert not ctx.path("static_dpo_n50").exists()  # force removed the old result before retraining


def test_static_schedule_trains_each_unfinished_round_in_order_through_train_round(tmp_path) -> None:
    """Rounds run one per process: `run_static_schedule` only calls `train_round(t)` for the rounds without a
    finished marker, in order, and reads back what the round's process wrote."""
    from types import SimpleNamespace

    from selfmoa import artifacts, variant_runs
    from selfmoa.cli import build_parser

    cfg = C.with_overrides(_cfg(), {"runs_dir": str(tmp_path)})
    v = next(v for v in variants.plan(cfg) if v.name == "static_sched_n16")
    run = tmp_path / "main"
    ctx = SimpleNamespace(cfg=cfg, run=run, stage="07b_variants", upstream={"a": "b"}, seed=0,
                          path=lambda name: run / "07b_variants" / name)  # fmt: skip
    key = variants.variant_key(cfg, ctx.stage, ctx.upstream, v)

    def finish(t: int, marker_key: str = key) -> None:
        adapter, marker = variant_runs.round_paths(ctx, v, t)
        artifacts.write_json(adapter / "adapter_config.json", {})
        artifacts.write_json(marker, {"key": marker_key, "row": {"round": t + 1, "n_pairs": 16, "sources": {}}})

    finish(0)  # finished before an interruption
    finish(1, "stale")  # trained under another config: trains again
    calls: list[int] = []
    adapters, rows = variant_runs.run_static_schedule(ctx, v, lambda t: (calls.append(t), finish(t)))
    assert calls == [1, 2]
    assert [r["round"] for r in rows] == [1, 2, 3] and rows[0]["schedule"]["rounds"] == 3
    assert [a.name for a in adapters] == ["adapter_round0", "adapter_round1", "adapter_round2"]
    assert variant_runs.run_static_schedule(ctx, v, calls.append)[1] == rows and calls == [1, 2]  # all kept

    (run / "07b_variants" / v.name / "round2.json").unlink()
    with pytest.raises(RuntimeError, match="round 2 finished but left no matching marker"):
        variant_runs.run_static_schedule(ctx, v, lambda t: None)
    with pytest.raises(ValueError, match="round 3 is not one of its 3 rounds"):
        variant_runs.train_static_round(ctx, v, 3)
    (run / "07b_variants" / v.name / "adapter_round0" / "adapter_config.json").unlink()
    with pytest.raises(RuntimeError, match=r"round 1 trains on rounds \[0\], which have not finished"):
        variant_runs.train_static_round(ctx, v, 1)  # checked before any model loads
    cmd = variant_runs.variant_command("configs/cpu.yaml", "main", v.name, ["seed=0"], round_=2)
    assert cmd[-4:] == ["--round", "2", "--name", v.name]
    assert build_parser().parse_args(cmd[cmd.index("variant") :]).round_ == 2


# ---- data efficiency: ratio with intervals ----


def _flags(rate: float, n: int = 40, seeds: int = 2) -> list:
    import numpy as np

    k = round(rate * n)
    return [np.array([1.0] * k + [0.0] * (n - k)) for _ in range(seeds)]


def test_ratio_interval_defined() -> None:
    from selfmoa import efficiency

    base = {"n_pairs": 0.0, "safe": _flags(0.2)}
    static = [base, {"n_pairs": 100.0, "safe": _flags(0.4)}, {"n_pairs": 200.0, "safe": _flags(0.8)}]
    selfmoa = [base, {"n_pairs": 50.0, "safe": _flags(0.6)}]
    r = efficiency.ratio_interval(static, selfmoa, n_boot=300, seed=0)
    assert r["ratio"] == pytest.approx(150 / 50) and r["target_safety"] == pytest.approx(0.6) and r["n_seeds"] == 2
    lo, hi = r["ci"]
    assert lo is not None and lo <= r["ratio"] and (hi is None or hi >= r["ratio"])
    assert r["defined_fraction"] + r["unreached_fraction"] == pytest.approx(1.0)


def test_ratio_interval_undefined_when_static_never_reaches() -> None:
    from selfmoa import efficiency

    base = {"n_pairs": 0.0, "safe": _flags(0.2)}
    static = [base, {"n_pairs": 120.0, "safe": _flags(0.3)}]
    selfmoa = [base, {"n_pairs": 60.0, "safe": _flags(0.9)}]
    r = efficiency.ratio_interval(static, selfmoa, n_boot=200)
    assert r["ratio"] is None and r["lower_bound"] == pytest.approx(2.0) and "never reached" in r["note"]
    assert r["unreached_fraction"] > 0.95 and r["ci"] == [None, None]  # every resample: unbounded
    flat = efficiency.pairs_ratio([(0, 0.5), (100, 0.9)], [(0, 0.5), (40, 0.4)])
    assert flat["ratio"] is None and "no safer" in flat["note"]
    same = {"n_pairs": 4.0, "safe": _flags(0.2)}  # Self-MOA no safer than base: no ratio, no interval
    no_gain = efficiency.ratio_interval([base, same], [base, {**same, "n_pairs": 8.0}], n_boot=100)
    assert no_gain["ratio"] is None and no_gain["ci"] == [None, None] and "no safer" in no_gain["note"]
    with pytest.raises(ValueError, match="seeds"):
        efficiency.ratio_interval(static, [base, {"n_pairs": 60.0, "safe": _flags(0.9, seeds=1)}])


def test_fair_curves_pareto_and_loop_weights() -> None:
    doc = _doc()

    def v(name: str, group: str, n: int, s: float, w: float = 1.0) -> dict:
        return {"name": name, "group": group, "n_pairs": n, "w_safety": w, "w_helpful": 1.0, "label_noise": 0.0,
                "metrics": _m(s)}  # fmt: skip

    doc["variants"] += [v("static_sched_n16", "static_schedule", 48, 0.2), v("static_sched_n40", "static_schedule", 120, 0.5),
                        v("selfmoa_cap16", "selfmoa_cap", 45, 0.5), v("loop_ws0", "loop_weights", 240, 0.6, 0.0),
                        v("loop_ws2", "loop_weights", 238, 0.75, 2.0)]  # fmt: skip
    final = {**_m(0.7), "n_pairs": 240, "w_safety": 1.0, "w_helpful": 1.0}
    frame = variants_frame(doc, {"selfmoa": final})
    curves = report.efficiency_curves(frame)
    fair = curves[curves["curve"] == report.SELFMOA_CURVE]
    assert list(fair["name"]) == ["base", "selfmoa_cap16", "selfmoa"]
    assert list(curves[curves["curve"] == report.STATIC_CURVE]["n_pairs"]) == [0, 48, 120]
    ratio = report.pairs_ratio_from_curves(curves)
    assert ratio["ratio"] is None and ratio["lower_bound"] == pytest.approx(120 / 240)  # static never reaches 0.7
    pareto = report.pareto_frame(frame)
    assert set(pareto["name"]) == {"base", "selfmoa", "static_sched_n16", "static_sched_n40", "selfmoa_cap16",
                                   "loop_ws0", "loop_ws2"}  # fmt: skip
    table = report.loop_weight_table(frame)
    assert [r["name"] for r in table] == ["loop_ws0", "selfmoa", "loop_ws2"]
    assert [r["w_safety"] for r in table] == [0.0, 1.0, 2.0]


def test_full_loop_figures_draw() -> None:
    import matplotlib

    matplotlib.use("Agg")
    doc = _doc()
    doc["variants"] += [
        {"name": "static_sched_n4", "group": "static_schedule", "n_pairs": 12, "w_safety": 1.0, "w_helpful": 1.0,
         "label_noise": 0.0, "metrics": _m(0.3)},
        {"name": "loop_ws0", "group": "loop_weights", "n_pairs": 70, "w_safety": 0.0, "w_helpful": 1.0,
         "label_noise": 0.0, "metrics": _m(0.65)},
    ]  # fmt: skip
    frame = variants_frame(doc, {"selfmoa": {**_m(0.7), "n_pairs": 70, "w_safety": 1.0, "w_helpful": 1.0}})
    fig = plotting.plot_pareto(report.pareto_frame(frame))
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert sorted(labels) == sorted(["base", "static_sched_n4", "loop_ws0: w_s=0, w_h=1 (whole loop)",
                                     "selfmoa: w_s=1, w_h=1 (whole loop)"])  # fmt: skip
    curves = report.efficiency_curves(frame)
    ratio = report.pairs_ratio_from_curves(curves)
    fig = plotting.plot_data_efficiency(curves, 0.1, ratio)
    assert len(fig.axes) == 2 and "undefined" in fig._suptitle.get_text()  # safety and over-refusal panels
