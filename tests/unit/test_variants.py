"""Study variants (plan, pairs, data-efficiency ratio) and the report's pure summary functions."""

from __future__ import annotations

import pandas as pd
import pytest

from selfmoa import config as C
from selfmoa import plotting, report, variants
from selfmoa.paths import CONFIGS
from selfmoa.report import variants_frame


def _cfg(**study: object) -> C.RunConfig:
    return C.with_overrides(C.load(CONFIGS / "cpu.yaml"), {f"study.{k}": v for k, v in study.items()})


def test_plan_covers_every_group_and_skips_the_loops_own_setting() -> None:
    plan = variants.plan(_cfg(weight_sweep=[0.0, 1.0, 2.0], helpful_sweep=[0.5], label_noise=[0.0, 0.2]))
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
    selfmoa = curves[curves["curve"].str.startswith("Self-MOA")]
    assert list(selfmoa["n_pairs"]) == [0, 20, 40, 70]
    ratio = report.pairs_ratio_from_curves(curves)
    assert ratio["target_safety"] == 0.7 and ratio["static_pairs"] == pytest.approx(200)
    assert ratio["ratio"] == pytest.approx(200 / 70)
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
