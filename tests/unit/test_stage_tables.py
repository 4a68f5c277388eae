"""Tables the notebooks show and save: variants (07b) and the report (08)."""

from __future__ import annotations

import pandas as pd
import pytest

from selfmoa import report, variants
from selfmoa.config import RunConfig


def _m(s: float) -> dict:
    return {"safety": s, "safety_ci": [s - 0.1, s + 0.1], "over_refusal": 0.1, "over_refusal_ci": [0.0, 0.2],
            "helpfulness": 0.7, "helpfulness_ci": [0.6, 0.8]}  # fmt: skip


def test_models_frame_and_headline() -> None:
    m = {**_m(0.5), "n_pairs": 3}
    df = report.models_frame({"base": m, "selfmoa": m})
    assert len(df) == 6 and set(df["metric"]) == {"safety", "over_refusal", "helpfulness"}
    text = report.headline_markdown({"base": m})
    assert "| base | 0.500 [0.400, 0.600] |" in text and text.rstrip().endswith("| 3 |")


def test_variant_tables() -> None:
    cfg = RunConfig()
    plan = variants.plan(cfg)
    assert list(variants.plan_frame(plan)["name"]) == [v.name for v in plan]
    result = {"key": "k", "name": "v", "group": "static", "n_pairs": 5, "metrics": _m(0.4), "train": {"seconds": 2.0}}
    result["seconds"] = 3.0
    table = variants.results_frame([result])
    assert table.iloc[0].to_dict() == {"name": "v", "group": "static", "n_pairs": 5, "safety": 0.4,
                                       "over_refusal": 0.1, "helpfulness": 0.7, "train_s": 2.0, "total_s": 3.0}  # fmt: skip
    ref = variants.reference_points(cfg, {"base": _m(0.2), "iter1": _m(0.6)}, n_round0_pairs=9)
    assert ref["base"]["n_pairs"] == 0 and ref["selfmoa_round1"]["n_pairs"] == 9
    assert ref["selfmoa_round1"]["label_noise"] == 0.0 and ref["selfmoa_round1"]["safety"] == 0.6
    doc = variants.document(cfg, ref, [result])
    assert "key" not in doc["variants"][0] and doc["reference"] is ref


def test_report_tables() -> None:
    judges = pd.DataFrame(
        [{"configuration": "train", "aspect": "safety", "judge": "ensemble", "accuracy": 0.8},
         {"configuration": "eval", "aspect": "safety", "judge": "ensemble", "accuracy": 0.9}]
    )  # fmt: skip
    assert report.training_judge_accuracy(judges) == pytest.approx(0.8)
    assert report.training_judge_accuracy(judges.iloc[1:]) is None
    curves = pd.DataFrame([{"curve": "static", "name": "static_dpo_n25", "n_pairs": 25, "safety": 0.5}])
    noise = pd.DataFrame(columns=report.SWEEP_KEYS)
    details = report.summary_details([], curves, noise, 0.8, {"judges": {"safety": "S"}})
    assert details["data_efficiency"] == curves.to_dict("records") and details["paired_final_vs_base"] is None
    tables = report.tables_markdown([], [], curves, noise)
    assert tables.startswith("### Closed loop") and "| static | static_dpo_n25 | 25 | 0.500 |" in tables
    assert tables.count("### ") == 4


def test_rounds_frame_counts_pairs_per_round() -> None:
    rows = [
        {"round": 1, "n_pairs": 4, "sources": {"harmful/curated": 2, "benign/curated": 2}, "train": {"seconds": 1.0},
         "schedule": {"reused": 0}},
        {"round": 2, "n_pairs": 3, "sources": {"harmful/sampled": 3}, "train": {"seconds": 2.0}},
    ]  # fmt: skip
    table = variants.rounds_frame([{"name": "static_sched_n4", "rounds": rows}, {"name": "old", "n_pairs": 2}])
    assert list(table["pairs_so_far"]) == [4, 7] and list(table["round"]) == [1, 2]
    assert table.iloc[0]["sources"] == "harmful/curated 2, benign/curated 2" and table.iloc[0]["reused"] == 0


def _records(n_safe: int, n: int = 4, refused: int = 0) -> list[dict]:
    harm = [{"id": str(i), "prompt_set": "h", "is_harmful": True, "safety": 1.0 if i < n_safe else 0.0,
             "refused": i < n_safe, "helpfulness": None} for i in range(n)]  # fmt: skip
    benign = [{"id": str(i), "prompt_set": "b", "is_harmful": False, "safety": 1.0, "refused": i < refused,
               "helpfulness": 0.5} for i in range(n)]  # fmt: skip
    return harm + benign


def test_efficiency_study_over_seeds(tmp_path) -> None:
    from selfmoa import artifacts

    def run(seed: int, cap_safe: int) -> tuple[dict, object]:
        folder = tmp_path / f"s{seed}"
        variant = {"name": "selfmoa_cap2", "group": "selfmoa_cap", "n_pairs": 6 + seed, "w_safety": 1.0,
                   "w_helpful": 1.0, "label_noise": 0.0, "metrics": _m(cap_safe / 4)}  # fmt: skip
        static = {**variant, "name": "static_sched_n2", "group": "static_schedule", "n_pairs": 6, "metrics": _m(0.25)}
        artifacts.write_jsonl(folder / "07b_variants" / "selfmoa_cap2" / "records.jsonl", _records(cap_safe))
        artifacts.write_jsonl(folder / "07b_variants" / "static_sched_n2" / "records.jsonl", _records(1))
        doc = {"reference": {"base": {**_m(0.0), "n_pairs": 0}}, "variants": [variant, static]}
        r = {"evaluated": {"models": {"iter1": _m(0.75)}}, "loop": {"iterations": [{}]}, "variants": doc,
             "n_pairs": {"selfmoa": 12}, "records": {"base": _records(0), "selfmoa": _records(3, refused=1)}}  # fmt: skip
        return r, folder

    (r0, d0), (r1, d1) = run(0, 2), run(1, 3)
    curves, flags = report.efficiency_study([d0, d1], [r0, r1], 0.5, 200)
    cap = curves[curves["name"] == "selfmoa_cap2"].iloc[0]
    assert cap["n_pairs"] == pytest.approx(6.5) and cap["safety"] == pytest.approx(0.625)
    assert cap["safety_lo"] <= 0.625 <= cap["safety_hi"]
    final = curves[curves["name"] == "selfmoa"].iloc[0]
    assert final["over_refusal"] == pytest.approx(0.25) and len(flags["selfmoa"]) == 2
    ratio = report.pairs_ratio_from_curves(curves, flags, n_boot=100)
    assert ratio["ratio"] is None and "never reached" in ratio["note"] and ratio["n_seeds"] == 2
    # a third seed without the loop variants (not in study.loop_variant_seeds) is left out, not the variants
    r2 = {**r0, "seed": 2, "variants": {"reference": r0["variants"]["reference"], "variants": []}}
    curves3, flags3 = report.efficiency_study([d0, d1, d0], [{**r0, "seed": 0}, {**r1, "seed": 1}, r2], 0.5, 50)
    assert set(curves3["name"]) == set(curves["name"]) and set(curves3["seeds"]) == {"0,1"}
