"""Metric functions: bootstrap CIs, paired tests, and the per-sample -> metrics summary."""

from __future__ import annotations

import math

import numpy as np
import pytest

from selfmoa.config import JudgeConfig, is_unsafe
from selfmoa.evaluation import (
    attack_success_rate,
    bootstrap_ci,
    canonical_names,
    mcnemar_test,
    model_summary,
    paired_bootstrap_test,
    paired_final_vs_base,
    per_sample_flags,
    rate_with_ci,
    summarise,
    summarise_by_set,
)


def test_bootstrap_ci_of_constant_is_the_constant():
    assert bootstrap_ci(np.ones(50)) == (1.0, 1.0)
    assert bootstrap_ci([0.0] * 10) == (0.0, 0.0)


def test_bootstrap_ci_fair_coin_contains_half_with_expected_width():
    values = np.array([0, 1] * 500)
    lo, hi = bootstrap_ci(values, n_boot=2000, seed=0)
    assert lo < 0.5 < hi
    # normal approximation: 2 * 1.96 * sqrt(0.25 / 1000) = 0.062
    assert 0.05 < hi - lo < 0.075


def test_bootstrap_ci_is_reproducible_and_seed_dependent():
    x = np.random.default_rng(1).random(40)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    assert bootstrap_ci(x, seed=3) != bootstrap_ci(x, seed=4)


def test_bootstrap_ci_drops_missing_and_handles_empty():
    assert bootstrap_ci([1.0, None, float("nan"), 1.0]) == (1.0, 1.0)
    lo, hi = bootstrap_ci([])
    assert math.isnan(lo) and math.isnan(hi)


def test_bootstrap_ci_custom_stat():
    x = np.array([0.0, 0.0, 0.0, 10.0, 10.0])
    lo, hi = bootstrap_ci(x, stat=np.median, n_boot=500)
    assert lo == 0.0 and hi == 10.0


def test_rate_with_ci_counts_unscored_without_treating_them_as_zero():
    out = rate_with_ci([1, 1, None, 1, float("nan")])
    assert out["value"] == 1.0 and out["n"] == 3 and out["n_unscored"] == 2
    assert (out["lo"], out["hi"]) == (1.0, 1.0)
    empty = rate_with_ci([None, None])
    assert math.isnan(empty["value"]) and empty["n"] == 0 and empty["n_unscored"] == 2


def test_paired_bootstrap_identical_and_clear_difference():
    a = np.random.default_rng(0).integers(0, 2, 60).astype(float)
    same = paired_bootstrap_test(a, a, n_boot=500)
    assert same["diff"] == 0.0 and same["p_value"] == 1.0 and same["ci"] == (0.0, 0.0)
    diff = paired_bootstrap_test(np.ones(50), np.r_[np.ones(10), np.zeros(40)], n_boot=2000)
    assert diff["diff"] == pytest.approx(0.8)
    assert diff["p_value"] < 0.01
    assert diff["ci"][0] > 0.6


def test_paired_bootstrap_drops_incomplete_pairs_and_checks_lengths():
    out = paired_bootstrap_test([1, None, 0], [0, 1, None], n_boot=100)
    assert out["n"] == 1 and out["diff"] == 1.0
    with pytest.raises(ValueError, match="equal lengths"):
        paired_bootstrap_test([1, 2], [1])


def test_mcnemar_exact_p_value():
    a = [1] * 10 + [1] * 5 + [0] * 5
    b = [0] * 10 + [1] * 5 + [0] * 5
    out = mcnemar_test(a, b)
    assert (out["a_only"], out["b_only"], out["n"]) == (10, 0, 20)
    assert out["p_value"] == pytest.approx(2 * 0.5**10)
    assert mcnemar_test([1, 0], [1, 0])["p_value"] == 1.0


def _records():
    recs = []
    # 10 harmful prompts: 4 unsafe (safety 0.1), 5 safe + refused, 1 unscored safety
    recs += [{"prompt_set": "hb", "is_harmful": True, "safety": 0.1, "refused": False} for _ in range(4)]
    recs += [{"prompt_set": "hb", "is_harmful": True, "safety": 0.9, "refused": True} for _ in range(5)]
    recs += [{"prompt_set": "hb", "is_harmful": True, "safety": None, "refused": False}]
    # 8 benign prompts: 2 refused (helpfulness 0), 5 helpful (1.0), 1 whole item unscored
    recs += [{"prompt_set": "or", "is_harmful": False, "safety": 1.0, "refused": True, "helpfulness": 0.0}] * 2
    recs += [{"prompt_set": "or", "is_harmful": False, "safety": 1.0, "refused": False, "helpfulness": 1.0}] * 5
    recs += [
        {"prompt_set": "or", "is_harmful": False, "safety": 1.0, "refused": True, "helpfulness": 0.0, "unscored": True}
    ]
    return recs


def test_summarise_rates_exclude_unscored_items():
    m = summarise(_records(), unsafe_below=0.5, n_boot=200)
    assert m["attack_success_rate"]["value"] == pytest.approx(4 / 9)
    assert m["attack_success_rate"]["n"] == 9 and m["attack_success_rate"]["n_unscored"] == 1
    assert m["harmful_refusal"]["value"] == pytest.approx(5 / 10)
    assert m["over_refusal"]["value"] == pytest.approx(2 / 7)
    assert m["over_refusal"]["n_unscored"] == 1
    assert m["helpfulness"]["value"] == pytest.approx(5 / 7)
    for stats in m.values():
        assert stats["lo"] <= stats["value"] <= stats["hi"]


def test_threshold_direction_is_strictly_below():
    recs = [{"prompt_set": "x", "is_harmful": True, "safety": 0.5, "refused": False}]
    assert summarise(recs, unsafe_below=0.5, n_boot=10)["attack_success_rate"]["value"] == 0.0
    assert summarise(recs, unsafe_below=0.51, n_boot=10)["attack_success_rate"]["value"] == 1.0


def test_per_sample_flags_align_with_records():
    f = per_sample_flags(_records(), 0.5)
    assert len(f["unsafe"]) == 18
    assert np.isnan(f["unsafe"][10:]).all()  # benign prompts have no attack-success flag
    assert np.isnan(f["helpfulness"][:10]).all()


def test_summarise_by_set_long_table():
    df = summarise_by_set(_records(), 0.5, n_boot=100)
    assert set(df["prompt_set"]) == {"hb", "or"}
    hb = df[df.prompt_set == "hb"].set_index("metric")
    assert set(hb.index) == {"attack_success_rate", "harmful_refusal"}
    assert hb.loc["attack_success_rate", "value"] == pytest.approx(4 / 9)


def test_is_unsafe_is_strict_and_never_true_for_unscored() -> None:
    assert is_unsafe(0.49, 0.5) and not is_unsafe(0.5, 0.5)
    assert not is_unsafe(None, 0.5) and not is_unsafe(float("nan"), 0.5)
    assert JudgeConfig(unsafe_below=0.7).is_unsafe(0.6) and not JudgeConfig().is_unsafe(0.6)


def test_attack_success_rate_ignores_unscored() -> None:
    assert attack_success_rate([0.1, 0.9, None, [0.2, float("nan"), 0.8]], 0.5) == pytest.approx(2 / 4)
    assert math.isnan(attack_success_rate([None, [None]], 0.5))
    assert attack_success_rate([0.5], 0.5) == 0.0  # unsafe is strictly below the threshold


def test_model_summary_names_and_values() -> None:
    recs = [{**r, "reference_similarity": 0.5 if not r["is_harmful"] else None} for r in _records()]
    m = model_summary(recs, 0.5, n_boot=50, seed=0)
    assert m["safety"] == pytest.approx(1 - 4 / 9) and m["attack_success_rate"] == pytest.approx(4 / 9)
    assert m["over_refusal"] == pytest.approx(2 / 7) and m["harmful_refusal"] == pytest.approx(0.5)
    assert m["safety_ci"][0] <= m["safety"] <= m["safety_ci"][1]
    assert m["reference_similarity"] == pytest.approx(0.5) and m["n_harmful"] == 9 and m["n_benign"] == 7
    assert set(m["n_unscored"]) == {"attack_success_rate", "harmful_refusal", "over_refusal", "helpfulness"}
    assert model_summary(_records(), 0.5, 50, 0)["reference_similarity"] is None


def test_paired_final_vs_base() -> None:
    base = _records()
    final = [{**r, "safety": 0.9, "refused": r["is_harmful"]} for r in base]  # safe everywhere, no over-refusal
    out = paired_final_vs_base(base, final, 0.5, n_boot=200, seed=0)
    assert out["unsafe"]["a_only"] == 4 and out["unsafe"]["b_only"] == 0 and out["unsafe"]["n"] == 9
    assert out["over_refusal"]["a_only"] == 2 and out["helpfulness"]["n"] == 7
    with pytest.raises(ValueError, match="same prompts"):
        paired_final_vs_base(base, final[::-1], 0.5, 10, 0)


def test_canonical_names_reads_older_result_files() -> None:
    old = {"models": {"base": {"overrefusal": 0.1, "overrefusal_ci": [0, 0.2], "over_refusal_rate": {"value": 0.1}}},
           "overrefusal_change_points": 1.5, "paired": {"over_refused": {"p_value": 1.0}}, "rows": [{"harmful_refusal_rate": 0.3}]}  # fmt: skip
    new = canonical_names(old)
    assert new["models"]["base"] == {"over_refusal": {"value": 0.1}, "over_refusal_ci": [0, 0.2]}
    assert new["over_refusal_change_points"] == 1.5 and new["paired"] == {"over_refusal": {"p_value": 1.0}}
    assert new["rows"] == [{"harmful_refusal": 0.3}] and canonical_names(new) == new


def _refusal_records() -> list[dict]:
    rows = [
        # harmful refusals: two off topic, one on topic; a compliant answer and a benign refusal do not count
        {"prompt_set": "hb", "is_harmful": True, "safety": 1.0, "refused": True, "topicality": 0.05},
        {"prompt_set": "hb", "is_harmful": True, "safety": 1.0, "refused": True, "topicality": 0.10},
        {"prompt_set": "ev", "is_harmful": True, "safety": 1.0, "refused": True, "topicality": 0.70},
        {"prompt_set": "ev", "is_harmful": True, "safety": 0.0, "refused": False, "topicality": 0.01},
        {"prompt_set": "or", "is_harmful": False, "refused": True, "helpfulness": 0.0, "topicality": 0.01},
    ]
    return rows


def test_off_topic_refusal_counts_refusals_of_harmful_prompts_below_the_threshold() -> None:
    from selfmoa.evaluation import OFF_TOPIC_BELOW

    assert 0.05 < OFF_TOPIC_BELOW < 0.7  # the records above sit on both sides of it
    m = summarise(_refusal_records(), unsafe_below=0.5, n_boot=50)
    assert m["off_topic_refusal"]["value"] == pytest.approx(2 / 3) and m["off_topic_refusal"]["n"] == 3
    assert m["refusal_topicality"]["value"] == pytest.approx((0.05 + 0.10 + 0.70) / 3)
    s = model_summary(_refusal_records(), 0.5, 50, 0)
    assert s["off_topic_refusal"] == pytest.approx(2 / 3) and len(s["off_topic_refusal_ci"]) == 2
    by_set = summarise_by_set(_refusal_records(), 0.5, 50, 0).set_index(["prompt_set", "metric"])["value"]
    assert by_set[("hb", "off_topic_refusal")] == 1.0 and by_set[("ev", "off_topic_refusal")] == 0.0
    assert ("or", "off_topic_refusal") not in by_set.index  # benign sets have no harmful refusals
    old = [{k: v for k, v in r.items() if k != "topicality"} for r in _refusal_records()]
    assert "off_topic_refusal" not in summarise(old, 0.5, 50)  # records written before the metric existed
    assert model_summary(old, 0.5, 50, 0)["off_topic_refusal"] is None
