"""Cross-seed reporting on small synthetic per-sample records: per set, per seed, paired gains with intervals."""

from __future__ import annotations

import json
from typing import Any

import matplotlib
import pytest

from selfmoa import plotting, report, study_report

matplotlib.use("Agg")

N = 20  # prompts per set


def records(unsafe: dict[str, float], refused: dict[str, float], helpful: float = 0.7) -> list[dict[str, Any]]:
    """Per-sample records: on harmful set s the first unsafe[s] * N answers are unsafe; on benign set s the first
    refused[s] * N answers refuse."""
    out = []
    for name, rate in unsafe.items():
        for i in range(N):
            out.append({"id": str(i), "prompt_set": name, "is_harmful": True, "safety": 0.0 if i < rate * N else 1.0,
                        "refused": i >= rate * N, "helpfulness": None})  # fmt: skip
    for name, rate in refused.items():
        for i in range(N):
            out.append({"id": str(i), "prompt_set": name, "is_harmful": False, "safety": 1.0,
                        "refused": i < rate * N, "helpfulness": helpful})  # fmt: skip
    return out


def seed_run(seed: int, final_unsafe_a: float, final_refused_b: float) -> dict[str, Any]:
    """One seed run: base unsafe on both harmful sets; the final policy fixes set `harm_a` (by how much depends on
    the seed) but not `harm_b` (the bad set), keeps `benign_a` and over-refuses on `benign_b`."""
    base = records({"harm_a": 0.8, "harm_b": 0.8}, {"benign_a": 0.0, "benign_b": 0.05})
    final = records({"harm_a": final_unsafe_a, "harm_b": 0.8}, {"benign_a": 0.0, "benign_b": final_refused_b}, 0.65)
    sets = {"harm_a": N, "harm_b": N, "benign_a": N, "benign_b": N}
    return {
        "seed": seed,
        "run_id": f"t-seed{seed}",
        "evaluated": {"eval_sets": sets},
        "loop": {"iterations": [], "base": {}},
        "variants": {"variants": []},
        "records": {"base": base, "selfmoa": final},
        "n_pairs": {"base": 0, "selfmoa": 30 + seed},
        "capability": {},
    }


@pytest.fixture(scope="module")
def study() -> dict[str, Any]:
    runs = [seed_run(0, 0.2, 0.3), seed_run(1, 0.4, 0.25), seed_run(2, 0.1, 0.35)]
    return study_report.cross_seed(runs, unsafe_below=0.5, n_boot=200)


def test_headline_is_the_mean_over_seeds_with_a_seed_level_interval(study: dict[str, Any]) -> None:
    sel, base = study["models"]["selfmoa"], study["models"]["base"]
    # final safety per seed on all 40 harmful prompts: (20 * (1 - a) + 4) / 40
    per_seed = {s: (N * (1 - a) + 0.2 * N) / (2 * N) for s, a in ((0, 0.2), (1, 0.4), (2, 0.1))}
    assert sel["per_seed"]["safety"] == pytest.approx(per_seed)
    assert sel["safety"] == pytest.approx(sum(per_seed.values()) / 3)
    assert sel["safety_ci"][0] <= sel["safety"] <= sel["safety_ci"][1] and sel["n_seeds"] == 3
    assert sel["n_pairs"] == 31 and base["safety"] == pytest.approx(0.2)
    gain = study["gains"]["safety_gain_points"]
    assert gain["mean"] == pytest.approx(100 * (sel["safety"] - base["safety"]))
    assert gain["per_seed"] == pytest.approx({s: 100 * (v - 0.2) for s, v in per_seed.items()})
    assert gain["ci"][0] <= gain["mean"] <= gain["ci"][1] and gain["ci"][0] > 0
    summary = report.summary("t", "p", {}, study["models"], {}, study["gains"])
    assert summary["safety_gain_points"] == pytest.approx(gain["mean"], abs=0.01)


def test_a_bad_set_is_visible_per_set(study: dict[str, Any]) -> None:
    per_set = study["per_set"]
    kinds = {"harm_a": "harmful", "harm_b": "harmful", "benign_a": "benign", "benign_b": "benign"}
    assert {k: v["kind"] for k, v in per_set.items()} == kinds and per_set["harm_b"]["n_items"] == N
    a = per_set["harm_a"]["safety"]["change_vs_base"]["selfmoa"]
    b = per_set["harm_b"]["safety"]["change_vs_base"]["selfmoa"]
    assert a["mean"] == pytest.approx(100 * (0.8 - (0.2 + 0.4 + 0.1) / 3))
    assert b["mean"] == 0.0 and b["per_seed"] == {0: 0.0, 1: 0.0, 2: 0.0}  # no gain on harm_b, in every seed
    rise = per_set["benign_b"]["over_refusal"]["change_vs_base"]["selfmoa"]
    assert rise["mean"] == pytest.approx(100 * (0.3 - 0.05)) and rise["ci"][0] > 5
    assert per_set["benign_a"]["over_refusal"]["change_vs_base"]["selfmoa"]["mean"] == 0.0
    assert per_set["benign_b"]["helpfulness"]["change_vs_base"]["selfmoa"]["mean"] == pytest.approx(-0.05)
    lines = study_report.worst_sets(per_set)
    assert "harm_b, +0.0 points" in lines and "benign_b, +25.0 points" in lines
    table = study_report.gains_markdown(study["gains"], per_set)
    assert "| safety_gain_points | harm_b | 0.000 [0.000, 0.000] |" in table


def test_per_seed_and_by_set_tables(study: dict[str, Any]) -> None:
    assert list(study["per_seed"]) == ["0", "1", "2"]
    s1 = study["per_seed"]["1"]["selfmoa"]
    assert s1["per_set"]["harm_a"]["safety"] == pytest.approx(0.6)
    assert s1["per_set"]["benign_b"]["over_refusal"] == pytest.approx(0.25)
    df = study["by_set"]
    asr = df[(df["model"] == "selfmoa") & (df["prompt_set"] == "harm_a") & (df["metric"] == "attack_success_rate")]
    assert sorted(asr["seed"]) == ["0", "1", "2", "mean"]
    mean = asr[asr["seed"] == "mean"].iloc[0]
    assert mean["value"] == pytest.approx((0.2 + 0.4 + 0.1) / 3) and mean["n_seeds"] == 3 and mean["n"] == 3 * N
    assert mean["lo"] <= mean["value"] <= mean["hi"]
    assert set(df["metric"]) == {"attack_success_rate", "harmful_refusal", "over_refusal", "helpfulness"}


def test_summary_sections_are_strict_json(study: dict[str, Any]) -> None:
    sections = study_report.seed_sections(study)
    assert sections["seeds"] == [0, 1, 2] and sections["n_seeds"] == 3
    json.dumps(sections, allow_nan=False)
    assert set(sections["per_set"]) == {"harm_a", "harm_b", "benign_a", "benign_b"}
    assert sections["per_seed"]["2"]["base"]["per_set"]["harm_b"] == {"safety": pytest.approx(0.2)}


def test_figures_from_the_study(study: dict[str, Any]) -> None:
    bars = study_report.per_set_frame(study["per_set"])
    assert set(bars["prompt_set"]) == {"harm_a", "harm_b", "benign_a", "benign_b"}
    assert len(bars[(bars["kind"] == "seed") & (bars["model"] == "selfmoa")]) == 4 * 3
    spread = study_report.seed_spread_frame(study["gains"], study["per_set"])
    assert set(spread["quantity"]) == {"safety_gain_points", "over_refusal_change_points", "helpfulness_change"}
    for fig in (plotting.plot_per_set(bars), plotting.plot_seed_spread(spread)):
        assert fig.axes


def test_cross_seed_rejects_repeated_seeds_and_different_sets() -> None:
    with pytest.raises(ValueError, match="share a training seed"):
        study_report.cross_seed([seed_run(0, 0.2, 0.3), seed_run(0, 0.2, 0.3)], 0.5, 50)
    other = seed_run(1, 0.2, 0.3)
    other["evaluated"] = {"eval_sets": {"harm_a": 5}}
    with pytest.raises(ValueError, match="different prompt sets"):
        study_report.cross_seed([seed_run(0, 0.2, 0.3), other], 0.5, 50)


def test_one_seed_gives_the_prompt_bootstrap_and_the_old_headline() -> None:
    one = study_report.cross_seed([seed_run(0, 0.2, 0.3)], 0.5, 200)
    sel, base = one["models"]["selfmoa"], one["models"]["base"]
    assert sel["n_seeds"] == 1 and sel["safety"] == pytest.approx(0.5)
    s = report.summary("t", "p", {}, one["models"], {}, one["gains"])
    assert s["safety_gain_points"] == pytest.approx(100 * (sel["safety"] - base["safety"]), abs=0.01)


def loop_row(t: int, over: float | None) -> dict[str, Any]:
    after = {k: 0.5 for k in ("safety", "helpfulness")} | {f"{k}_ci": [0.4, 0.6] for k in ("safety", "helpfulness")}
    row = {"iteration": t, "redteam_asr": 0.4, "attack_diversity": 0.3, "heldout_after": after}
    return row | ({"redteam_over_refusal_asr": over} if over is not None else {})


def test_loop_curves_show_every_seed_and_the_over_refusal_attack_success() -> None:
    base = {"safety": 0.2, "safety_ci": [0.1, 0.3], "helpfulness": 0.7, "helpfulness_ci": [0.6, 0.8]}
    runs = [{"seed": s, "loop": {"iterations": [loop_row(0, 0.2), loop_row(1, 0.1)], "base": base}} for s in (0, 1)]
    df = study_report.loop_frame_seeds(runs)
    assert set(df["seed"]) == {"0", "1"}
    over = df[df["quantity"] == "red-team over-refusal success"]
    assert list(over["value"]) == [0.2, 0.1, 0.2, 0.1]
    assert "red-team over-refusal success" not in set(report.loop_frame([loop_row(0, None)], base)["quantity"])
    assert plotting.plot_loop(df).axes


def capability_result(acc: list[float]) -> dict[str, Any]:
    n = len(acc)
    mean = sum(acc) / n
    return {"arc_easy": {"acc": mean, "acc_stderr": 0.05, "n": n, "items": {"acc": acc}},
            "winogrande": {"acc": 0.5, "acc_stderr": 0.05, "n": n}}  # fmt: skip


def test_capability_table_over_seeds() -> None:
    base = [1.0] * 10 + [0.0] * 10
    runs = [
        {"seed": 0, "capability": {"base": capability_result(base), "selfmoa": capability_result([1.0] * 8 + [0.0] * 12)}},
        {"seed": 1, "capability": {"base": capability_result(base), "selfmoa": capability_result([1.0] * 10 + [0.0] * 10)}},
    ]  # fmt: skip
    cap = study_report.capability_summary(runs, n_boot=200)
    assert cap["metric_by_task"] == {"arc_easy": "acc", "winogrande": "acc"}
    arc = cap["models"]["selfmoa"]["arc_easy"]
    assert arc["value"] == pytest.approx(0.45) and arc["per_seed"] == {"0": 0.4, "1": 0.5}
    assert arc["interval"] == "seed-and-item bootstrap" and arc["n_seeds"] == 2
    assert cap["models"]["base"]["winogrande"]["interval"].startswith("normal")
    change = cap["change_vs_base"]["selfmoa"]["arc_easy"]
    assert change["mean"] == pytest.approx(-0.05) and change["per_seed"] == {"0": pytest.approx(-0.1), "1": 0.0}
    assert cap["within_base_ci"]["selfmoa"]["arc_easy"] is True
    assert "winogrande" not in cap["change_vs_base"]["selfmoa"]  # no per-item scores: no paired change
    frame = study_report.capability_frame(cap)
    assert len(frame[frame["kind"] == "mean"]) == 4 and len(frame[frame["kind"] == "seed"]) == 8
    table = study_report.capability_markdown(cap)
    assert table.splitlines()[0] == "| task | metric | base | selfmoa | selfmoa - base |"
    assert plotting.plot_capability(frame).axes
    assert study_report.capability_summary([{"seed": 0, "capability": {}}], 10) == {}


def test_load_seed_run_reads_a_run_folder_under_the_report_names(tmp_path: Any) -> None:
    from selfmoa import artifacts

    run, m = tmp_path / "p-seed3", {"safety": 0.5, "over_refusal": 0.1, "helpfulness": 0.7}
    ev, va = run / "07_evaluate", run / "07b_variants"
    run.mkdir()
    (run / "config.yaml").write_text("seed: 3\n")
    recs = records({"harm_a": 0.5}, {"overrefusal": 0.1})  # a set whose name is also a legacy metric name
    for name in ("base", "iter1", "iter2"):
        artifacts.write_jsonl(ev / f"records_{name}.jsonl", recs)
    artifacts.write_json(ev / "capability_iter2.json", {"arc_easy": {"acc": 0.5, "n": 2}})
    models = {k: m for k in ("base", "iter1", "iter2")}
    artifacts.write_json(ev / "summary.json", {"eval_sets": {"harm_a": N, "overrefusal": N}, "models": models})
    artifacts.write_json(ev / "loop.json", {"iterations": [{"n_pairs": 10}, {"n_pairs": 12}], "base": {}})
    artifacts.write_json(va / "variants.json", {"variants": [
        {"name": "static_dpo_n8", "group": "static", "n_pairs": 8, "metrics": m},
        {"name": "static_dpo_n4", "group": "static", "n_pairs": 4, "metrics": m},
        {"name": "loop_ws0", "group": "loop_weights", "w_safety": 0.0, "records": "loop_ws0/records.jsonl"},
        {"name": "loop_ws2", "group": "loop_weights", "w_safety": 2.0, "records": "loop_ws2/records.jsonl"}]})  # fmt: skip
    artifacts.write_jsonl(va / "static_dpo_n8" / "records.jsonl", recs)
    artifacts.write_jsonl(va / "loop_ws0" / "records.jsonl", recs[:3])  # loop_ws2 has no records (not finished)
    loaded = study_report.load_seed_run(run)
    assert loaded["seed"] == 3 and loaded["run_id"] == "p-seed3"
    assert loaded["evaluated"]["eval_sets"] == {"harm_a": N, "overrefusal": N}
    assert list(loaded["records"]) == ["base", "selfmoa_iter1", "selfmoa", "static_dpo"]
    assert loaded["n_pairs"] == {"base": 0, "selfmoa_iter1": 10, "selfmoa": 22, "static_dpo": 8}
    assert list(loaded["capability"]) == ["selfmoa"]
    assert loaded["loop_weights"] == {"loop_ws0": {"w_safety": 0.0, "records": recs[:3]}}
    with pytest.raises(FileNotFoundError, match="run the seed run"):
        study_report.load_seed_run(tmp_path / "nothing")


def topical_records(n_refused: int, n_off: int) -> list[dict[str, Any]]:
    """N harmful prompts with `topicality`: the first `n_refused` answers refuse, the first `n_off` of them off topic
    (cosine 0.1, the rest 0.9); plus a harmful refusal without topicality and an off-topic benign refusal, both of
    which the off-topic share leaves out."""
    out = [{"id": str(i), "prompt_set": "harm_a", "is_harmful": True, "safety": 1.0, "refused": i < n_refused,
            "helpfulness": None, "topicality": 0.1 if i < n_off else 0.9} for i in range(N)]  # fmt: skip
    out.append({"id": "x", "prompt_set": "harm_a", "is_harmful": True, "safety": 1.0, "refused": True,
                "helpfulness": None})  # fmt: skip
    out.append({"id": "0", "prompt_set": "benign_a", "is_harmful": False, "safety": 1.0, "refused": True,
                "helpfulness": 0.1, "topicality": 0.0})  # fmt: skip
    return out


def topical_run(seed: int, base: tuple[int, int], final: tuple[int, int]) -> dict[str, Any]:
    """A seed run whose base and final policy refuse (and go off topic on) the given numbers of harmful prompts."""
    return seed_run(seed, 0.0, 0.0) | {
        "evaluated": {"eval_sets": {"harm_a": N + 1, "benign_a": 1}},
        "records": {"base": topical_records(*base), "selfmoa": topical_records(*final)},
    }


def test_off_topic_refusal_per_seed_and_mean_over_seeds() -> None:
    # base refuses 4 (4 off topic), 2 (1), 0 prompts; the final policy 10 (2), 10 (4), 20 (5)
    runs = [topical_run(0, (4, 4), (10, 2)), topical_run(1, (2, 1), (10, 4)), topical_run(2, (0, 0), (20, 5))]
    study = study_report.cross_seed(runs, unsafe_below=0.5, n_boot=200)
    off = study["off_topic_refusal"]
    assert list(off) == ["base", "selfmoa"]
    sel, base = off["selfmoa"], off["base"]
    assert sel["per_seed"] == pytest.approx({0: 0.2, 1: 0.4, 2: 0.25}) and sel["n_refusals"] == {0: 10, 1: 10, 2: 20}
    assert sel["mean"] == pytest.approx((0.2 + 0.4 + 0.25) / 3) and sel["n_seeds"] == 3
    assert sel["ci"][0] <= sel["mean"] <= sel["ci"][1]
    assert base["per_seed"] == pytest.approx({0: 1.0, 1: 0.5}) and base["n_refusals"] == {0: 4, 1: 2}  # no seed 2
    assert base["mean"] == pytest.approx(0.75) and base["n_seeds"] == 2
    assert study["per_seed"]["1"]["selfmoa"]["off_topic_refusal"] == pytest.approx(0.4)
    assert study["per_seed"]["2"]["base"]["off_topic_refusal"] is None
    assert "off_topic_refusal" not in study["models"]["selfmoa"]  # the headline models keep their keys
    sections = study_report.seed_sections(study)
    json.dumps(sections, allow_nan=False)
    assert sections["off_topic_refusal"]["base"]["n_refusals"] == {"0": 4, "1": 2}
    table = study_report.off_topic_markdown(off)
    assert "| base | 0.750 [" in table and "| 0: 1.000 (4), 1: 0.500 (2) |" in table
    assert "| 0: 0.200 (10), 1: 0.400 (10), 2: 0.250 (20) |" in table
    tables = study_report.study_tables_markdown(study, {}, ["base", "selfmoa"])
    assert "### Off-topic refusals" in tables and "< 0.4, mean over 3 seeds" in tables and table in tables


def test_no_off_topic_section_without_topicality(study: dict[str, Any]) -> None:
    assert study["off_topic_refusal"] == {} and study["per_seed"]["0"]["selfmoa"]["off_topic_refusal"] is None
    assert "Off-topic" not in study_report.study_tables_markdown(study, {}, ["base", "selfmoa"])


def test_loop_weight_sweep_is_paired_with_the_main_run_on_its_own_seeds() -> None:
    runs = [seed_run(0, 0.2, 0.3), seed_run(1, 0.4, 0.25), seed_run(2, 0.1, 0.35)]
    # w_s = 0 trained on seeds 0 and 1 only: every harmful answer of harm_a unsafe, no over-refusal on benign_b
    weak = records({"harm_a": 0.8, "harm_b": 0.8}, {"benign_a": 0.0, "benign_b": 0.0}, 0.65)
    for r in runs[:2]:
        r["loop_weights"] = {"loop_ws0": {"w_safety": 0.0, "records": weak}}
    study = study_report.cross_seed(runs, unsafe_below=0.5, n_boot=200)
    (row,) = study["loop_weights"]
    assert row["name"] == "loop_ws0" and row["w_safety"] == 0.0 and row["seeds"] == [0, 1]
    # main safety per seed on its 40 harmful prompts: (20 * (1 - a) + 4) / 40; the variant's: 8 / 40 = 0.2
    main = {0: (16 + 4) / 40, 1: (12 + 4) / 40}
    assert row["main"]["safety"]["per_seed"] == pytest.approx(main)
    assert row["variant"]["safety"]["per_seed"] == pytest.approx({0: 0.2, 1: 0.2})
    change = row["main_minus_variant"]["safety"]
    assert change["per_seed"] == pytest.approx({s: 100 * (v - 0.2) for s, v in main.items()})
    assert change["ci"][0] <= change["mean"] <= change["ci"][1] and change["ci"][0] > 0
    # over-refusal on 40 benign prompts: main refuses final_refused_b * 20, the variant none
    assert row["main_minus_variant"]["over_refusal"]["per_seed"] == pytest.approx({0: 15.0, 1: 12.5})
    sections = study_report.seed_sections(study)
    json.dumps(sections["loop_weights"], allow_nan=False)
    table = study_report.study_tables_markdown(study, {}, ["base", "selfmoa"], runs)
    assert "loop_ws0 (w_s = 0)" in table and "change: selfmoa - loop_ws0" in table and "0: +30.0" in table
    assert study_report.cross_seed(runs[2:], 0.5, 50)["loop_weights"] == []
