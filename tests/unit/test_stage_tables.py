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
