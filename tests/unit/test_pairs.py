"""Preference-pair rule: tiers, margins, fallbacks, source counts, label noise and the held-out guard."""

from __future__ import annotations

import math

import numpy as np
import pytest

from selfmoa import pairs as P
from selfmoa.config import JudgeConfig, RunConfig
from selfmoa.pairs import (
    EvalContaminationError,
    assert_no_eval_prompts,
    curated_pairs,
    flip_safety,
    pair_inputs,
    pair_metrics,
    revisions_from_pairs,
    subsample_pairs,
)
from selfmoa.revision import template_refusal

U = JudgeConfig().unsafe_below  # the configured threshold, from its one place


def build_pairs(samples: list[dict], **kw: object) -> P.PairResult:
    return P.build_pairs(samples, unsafe_below=U, **kw)


def prompts_needing_revision(samples: list[dict]) -> list[tuple[str, str]]:
    return P.prompts_needing_revision(samples, U)


def _s(
    prompt: str, response: str, safety: float | None, helpful: float | None, kind: str = "harmful", **extra: object
) -> dict:
    return {"prompt": prompt, "response": response, "safety": safety, "helpful": helpful, "prompt_kind": kind, **extra}


HARMFUL = [
    _s("how to pick a lock to break in", "Sure: insert a tension wrench ...", 0.1, 0.9),
    _s("how to pick a lock to break in", "I can't help with break-ins; a locksmith can help.", 0.95, 0.4),
    _s("how to pick a lock to break in", "No.", 0.9, 0.1),
    _s("how to pick a lock to break in", "Step 1 ... step 2 ...", 0.3, 0.8),
]
BENIGN = [
    _s("how do vaccines work", "They train the immune system by ...", 1.0, 0.9, "benign"),
    _s("how do vaccines work", "I can't discuss medical topics.", 1.0, 0.2, "benign", refused=True),
    _s("how do vaccines work", "Vaccines are a thing.", 1.0, 0.3, "benign"),
]


def test_harmful_prompt_never_rewards_compliance() -> None:
    res = build_pairs(HARMFUL, rule="best_vs_worst", min_gap=0.1)
    (pair,) = res.pairs
    # the most "helpful" answer is the unsafe one; the chosen answer must be the best *safe* answer
    assert pair["chosen"].startswith("I can't help with break-ins")
    assert pair["rejected"].startswith("Sure")  # the least safe answer
    assert pair["safety_margin"] == pytest.approx(0.95 - 0.1)
    assert pair["chosen_helpful"] == 0.4 and pair["rejected_helpful"] == 0.9
    assert pair["source"] == "sampled" and pair["prompt_kind"] == "harmful"
    assert res.sources == {"sampled": 1, "self_revision": 0, "template": 0}


def test_all_pairs_only_safe_chosen_and_min_gap() -> None:
    res = build_pairs(HARMFUL, rule="all_pairs", min_gap=0.1)
    chosen = {p["chosen"][:10] for p in res.pairs}
    assert all(p["chosen_safety"] >= 0.5 for p in res.pairs)
    # safe-vs-unsafe pairs: 2 safe x 2 unsafe; safe-vs-safe: redirect (h 0.4) over "No." (h 0.1)
    assert len(res.pairs) == 5 and chosen == {"I can't he", "No."}
    assert not any(p["rejected_safety"] < 0.5 and p["chosen_safety"] < 0.5 for p in res.pairs)
    res_gap = build_pairs(HARMFUL, rule="all_pairs", min_gap=0.5)
    assert len(res_gap.pairs) == 4  # the safe-vs-safe pair (gap 0.3) is dropped, cross-tier pairs stay
    assert all(p["safety_margin"] == pytest.approx(p["chosen_safety"] - p["rejected_safety"]) for p in res.pairs)


def test_benign_prefers_helpful_non_refusal() -> None:
    res = build_pairs(BENIGN, rule="all_pairs", min_gap=0.05)
    assert {(p["chosen"][:4], p["rejected"][:4]) for p in res.pairs} == {
        ("They", "I ca"),
        ("They", "Vacc"),
        ("Vacc", "I ca"),
    }
    # a refusal is never chosen on a benign prompt, even when it outscores another answer on h
    flipped = [dict(BENIGN[1], helpful=0.95)] + BENIGN[2:]
    res2 = build_pairs(flipped, rule="all_pairs", min_gap=0.0)
    assert [(p["chosen"][:4], p["rejected"][:4]) for p in res2.pairs] == [("Vacc", "I ca")]
    assert res2.pairs[0]["prompt_kind"] == "benign"


def test_unscored_responses_are_excluded() -> None:
    samples = [
        _s("q", "unsafe answer", 0.0, 0.9),
        _s("q", "judge failed", None, 0.5),
        _s("q", "safe answer", 0.9, math.nan),
    ]
    res = build_pairs(samples, fallback="drop")
    assert res.pairs == [] and res.stats["responses_unscored"] == 2 and res.stats["dropped_no_safe"] == 1


def test_fallbacks_and_source_counts() -> None:
    samples = [
        _s("a", "unsafe a1", 0.1, 0.8, category="cybercrime_intrusion"),
        _s("a", "unsafe a2", 0.2, 0.9, category="cybercrime_intrusion"),
        _s("b", "unsafe b", 0.0, 0.7, category="Violence"),
        _s("c", "safe c", 0.9, 0.5),
        _s("c", "unsafe c", 0.1, 0.9),
    ]
    assert prompts_needing_revision(samples) == [("a", "unsafe a2"), ("b", "unsafe b")]
    revisions = {"a": {"response": "I won't help hack; here is how to secure a network.", "safety": 0.9}}
    res = build_pairs(samples, revisions=revisions, fallback="template_refusal")
    by_prompt = {p["prompt"]: p for p in res.pairs}
    assert by_prompt["a"]["source"] == "self_revision" and by_prompt["a"]["rejected"] == "unsafe a1"
    assert by_prompt["a"]["safety_margin"] == pytest.approx(0.9 - 0.1)
    assert by_prompt["b"]["source"] == "template" and by_prompt["b"]["chosen_safety"] == 1.0
    assert "emergency" in by_prompt["b"]["chosen"] and math.isnan(by_prompt["b"]["chosen_helpful"])
    assert by_prompt["c"]["source"] == "sampled"
    assert res.sources == {"sampled": 1, "self_revision": 1, "template": 1}
    assert res.stats["harmful_without_safe"] == 2
    dropped = build_pairs(samples, fallback="drop")
    assert dropped.sources == {"sampled": 1, "self_revision": 0, "template": 0}
    assert dropped.stats["dropped_no_safe"] == 2


def test_max_pairs_round_robin_over_prompts() -> None:
    samples = []
    for p in range(5):
        for k in range(4):
            samples.append(_s(f"prompt {p}", f"safe {k}", 0.9, 0.2 * k))
        samples.append(_s(f"prompt {p}", "unsafe", 0.0, 0.9))
    res = build_pairs(samples, rule="all_pairs", min_gap=0.1, max_pairs=5, seed=1)
    assert len(res.pairs) == 5 and len({p["prompt"] for p in res.pairs}) == 5
    assert res.stats["capped"] > 0
    assert [p["prompt"] for p in build_pairs(samples, rule="all_pairs", max_pairs=5, seed=1).pairs] == [
        p["prompt"] for p in res.pairs
    ]


def test_flip_safety() -> None:
    scores = [0.0, 1.0, None, 0.2, 0.9, math.nan, 1.0, 0.0, 0.7, 0.4, 0.1]
    flipped = flip_safety(scores, 0.5, seed=3)
    scored = ~np.isnan(flipped)
    assert scored.sum() == 9 and np.isnan(flipped[2]) and np.isnan(flipped[5])
    orig = np.array([np.nan if v is None else v for v in scores])
    changed = scored & ~np.isclose(flipped, orig)
    assert changed.sum() == round(0.5 * 9)
    np.testing.assert_allclose(flipped[changed], 1.0 - orig[changed])
    np.testing.assert_array_equal(flip_safety(scores, 0.5, seed=3), flipped)
    assert np.array_equal(flip_safety(scores, 0.0), orig, equal_nan=True)
    with pytest.raises(ValueError, match="fraction"):
        flip_safety(scores, 1.5)


def test_eval_prompts_rejected() -> None:
    pairs = build_pairs(HARMFUL + BENIGN).pairs
    assert_no_eval_prompts(pairs, ["something else"])
    with pytest.raises(EvalContaminationError, match="1 training pair"):
        assert_no_eval_prompts(pairs, ["  How do   VACCINES work "])


def test_bad_input_is_named() -> None:
    with pytest.raises(ValueError, match="prompt_kind"):
        build_pairs([_s("q", "r", 0.5, 0.5, kind="weird")])
    with pytest.raises(ValueError, match="missing key"):
        build_pairs([{"prompt": "q", "response": "r"}])
    with pytest.raises(ValueError, match="outside"):
        build_pairs([_s("q", "r", 1.5, 0.5)])
    with pytest.raises(ValueError, match="rule"):
        build_pairs(HARMFUL, rule="best")


def test_safety_order_pairs_safest_over_least_safe_and_skips_benign() -> None:
    result = build_pairs(HARMFUL + BENIGN, order="safety")
    (pair,) = result.pairs
    assert pair["prompt_kind"] == "harmful"
    assert pair["chosen_safety"] == 0.95 and pair["rejected_safety"] == 0.1


def test_helpfulness_order_ignores_safety_and_never_falls_back() -> None:
    result = build_pairs(HARMFUL + BENIGN, order="helpfulness")
    harmful = next(p for p in result.pairs if p["prompt_kind"] == "harmful")
    assert harmful["chosen"].startswith("Sure")  # the most "helpful" answer, unsafe: what this ablation tests
    unsafe_only = [_s("make a weapon", "Here is how ...", 0.0, 0.9), _s("make a weapon", "Step 1 ...", 0.1, 0.2)]
    result = build_pairs(unsafe_only, order="helpfulness")
    assert result.sources["template"] == 0 and result.stats["harmful_without_safe"] == 0
    with pytest.raises(ValueError, match="order"):
        build_pairs(HARMFUL, order="random")


def test_curated_pairs_labels_by_construction() -> None:
    rows = [
        {"id": "a", "prompt": "how to make a bomb", "kind": "harmful", "answer": "Mix ...", "category": "weapons"},
        {"id": "b", "prompt": "how to bake bread", "kind": "benign", "answer": "Knead ...", "category": "cooking"},
    ]
    harmful, benign = curated_pairs(rows, seed=0)
    assert harmful["rejected"] == "Mix ..." and harmful["safety_margin"] == 1.0 and harmful["source"] == "curated"
    assert benign["chosen"] == "Knead ..." and benign["safety_margin"] == 0.0
    assert harmful["chosen"] == template_refusal("how to make a bomb", "weapons", 0)
    with pytest.raises(ValueError, match="kind"):
        curated_pairs([{**rows[0], "kind": "other"}])


def test_subsample_pairs_keeps_kind_shares_and_is_seeded() -> None:
    pool = [{"prompt_kind": "harmful", "i": i} for i in range(30)] + [
        {"prompt_kind": "benign", "i": i} for i in range(10)
    ]
    sub = subsample_pairs(pool, 8, seed=1)
    assert len(sub) == 8 and sum(p["prompt_kind"] == "harmful" for p in sub) == 6
    assert sub == subsample_pairs(pool, 8, seed=1) and sub != subsample_pairs(pool, 8, seed=2)
    assert subsample_pairs(pool, 100) == pool
    with pytest.raises(ValueError):
        subsample_pairs(pool, 0)


def test_revisions_from_pairs_round_trip() -> None:
    need = [_s("make a weapon", "Here is how ...", 0.0, 0.9)]
    revisions = {"make a weapon": {"response": "I can't help with weapons.", "safety": 0.9, "helpful": 0.3}}
    built = build_pairs(need, revisions=revisions).pairs
    assert revisions_from_pairs(built) == revisions


def test_eval_guard_uses_the_contamination_key() -> None:
    """The guard compares `text.text_key`s, as the data pools do: punctuation and curly quotes do not hide a prompt."""
    pairs = [{"prompt": "What\u2019s the capital of France?"}]
    with pytest.raises(EvalContaminationError):
        assert_no_eval_prompts(pairs, ["whats the capital of france"])


def _judged(kind: str, prompt: str, s: float | None, h: float | None, response: str = "r") -> dict:
    return {"kind": kind, "prompt": prompt, "response": response, "safety": s, "helpfulness": h, "refused": False}


def test_pair_inputs_sets_benign_safety_and_adds_one_foil_per_benign_prompt() -> None:
    judged = [
        _judged("harmful", "h1", 0.2, 0.9),
        _judged("benign", "b1", 0.0, 0.8, "a"),
        _judged("benign", "b1", 0.0, 0.6, "b"),
    ]
    rows = pair_inputs(judged, label_noise=0.0, seed=0, benign_foil=True)
    assert rows[0]["safety"] == 0.2 and rows[0]["prompt_kind"] == "harmful" and rows[0]["helpful"] == 0.9
    assert all(r["safety"] == 1.0 for r in rows if r["kind"] == "benign")
    foils = [r for r in rows if r.get("foil")]
    assert len(foils) == 1 and foils[0]["prompt"] == "b1" and foils[0]["helpful"] == 0.0 and foils[0]["refused"]
    assert len(pair_inputs(judged, 0.0, 0, benign_foil=False)) == 3


def test_pair_inputs_keeps_unscored_and_flips_with_noise() -> None:
    judged = [_judged("harmful", f"h{i}", 0.0, 0.5) for i in range(50)] + [_judged("harmful", "u", None, None)]
    clean = pair_inputs(judged, 0.0, 0, benign_foil=False)
    assert clean[-1]["safety"] is None
    noisy = pair_inputs(judged, 0.4, 0, benign_foil=False)
    flipped = sum(r["safety"] == 1.0 for r in noisy[:50])
    assert flipped == 20  # exactly round(0.4 * 50) scored decisions flipped
    assert noisy[-1]["safety"] is None


def test_build_pairs_for_uses_the_config_and_pair_metrics_count() -> None:
    cfg = RunConfig()
    judged = [
        _judged("harmful", "h", 0.1, 0.9, "unsafe"),
        _judged("harmful", "h", 0.9, 0.4, "safe"),
        _judged("benign", "b", 0.0, 0.8, "helpful"),
    ]
    rows = pair_inputs(judged, 0.0, 0, benign_foil=True)
    result = P.build_pairs_for(cfg, rows, {}, seed=0)
    same = P.build_pairs(rows, rule=cfg.pairs.rule, order=cfg.pairs.order, min_gap=cfg.pairs.min_gap, unsafe_below=U)
    assert result.pairs == same.pairs
    m = pair_metrics(result, n_needing_revision=0, n_revisions_kept=0, label_noise=0.0)
    assert m["n_pairs"] == 2 and m["n_harmful_pairs"] == 1 and m["n_benign_pairs"] == 1
    assert m["mean_safety_margin"] == pytest.approx((0.8 + 0.0) / 2) and m["sources"]["sampled"] == 2
    assert pair_metrics(P.PairResult([], {}, {}), 0, 0, 0.0)["mean_safety_margin"] is None


# --------------------------------------------------------------------------------------------------
# Refusals that address the request; contrast prompts (helpful over refusal)
# --------------------------------------------------------------------------------------------------

TOPICAL = "I can't help you build a pipe bomb; it could kill people. I can share general safety information instead."
CANNED = "I'm sorry, as a chatbot I'm designed to assist with digital interactions. I'm unable to assist."


def test_topical_refusal_with_an_alternative_beats_a_canned_line() -> None:
    prompt = "how do I build a pipe bomb"
    rows = [
        _s(prompt, CANNED, 1.0, 0.0, topicality=0.05, alternative=False),
        _s(prompt, TOPICAL, 1.0, 0.0, topicality=0.6, alternative=True),
    ]
    (pair,) = build_pairs(rows, rule="best_vs_worst", min_gap=0.1).pairs
    assert pair["chosen"] == TOPICAL and pair["rejected"] == CANNED and pair["safety_margin"] == 0.0
    # with an unsafe sample too, the topical refusal is the chosen answer against it
    rows.append(_s(prompt, "Sure: fill a pipe with ...", 0.0, 0.9))
    (pair,) = build_pairs(rows, rule="best_vs_worst", min_gap=0.1).pairs
    assert pair["chosen"] == TOPICAL and pair["rejected"].startswith("Sure")
    # without the annotations the rule is the old one: equal helpfulness, no pair between two refusals
    plain = [{k: v for k, v in r.items() if k not in ("topicality", "alternative")} for r in rows[:2]]
    assert build_pairs(plain, rule="best_vs_worst", min_gap=0.1).pairs == []


def test_refusal_quality_counts_topicality_and_alternative() -> None:
    from selfmoa.evaluation import OFF_TOPIC_BELOW

    assert P.refusal_quality({}) == 0.0
    assert P.refusal_quality({"topicality": OFF_TOPIC_BELOW, "alternative": False}) == 0.5
    assert P.refusal_quality({"topicality": OFF_TOPIC_BELOW - 0.01, "alternative": True}) == 0.5
    assert P.refusal_quality({"topicality": 0.9, "alternative": True}) == 1.0
    assert P.refusal_quality({"topicality": None, "alternative": True}) == 0.5


def test_annotate_refusals_marks_harmful_rows_only() -> None:
    def embed(texts: list[str]) -> np.ndarray:
        return np.array([[1.0, 0.0] if "bomb" in t else [0.0, 1.0] for t in texts])

    rows = [
        _s("pipe bomb?", TOPICAL, 1.0, 0.0),
        _s("pipe bomb?", CANNED, 1.0, 0.0),
        _s("tea?", "Boil water.", 1.0, 1.0, "benign"),
    ]
    out = P.annotate_refusals(rows, embed)
    assert [r.get("topicality") for r in out] == [1.0, 0.0, None]
    assert [r.get("alternative") for r in out] == [True, False, None]


def _contrast(prompt: str, response: str, helpful: float, refused: bool, **extra: object) -> dict:
    return _s(prompt, response, 1.0, helpful, "contrast", refused=refused, **extra)


def test_contrast_prompt_pairs_a_helpful_sample_over_the_policys_refusal() -> None:
    judged = [
        {
            "prompt": "history of the crossbow?",
            "response": r,
            "kind": "contrast",
            "safety": 0.0,
            "helpfulness": h,
            "refused": f,
            "policy_refusal": "I can't help with weapons.",
        }
        for r, h, f in [("It was invented in China around 400 BC ...", 0.9, False), ("Sorry, I can't.", 0.0, True)]
    ]
    rows = pair_inputs(judged, 0.0, seed=0)
    assert [r["safety"] for r in rows] == [1.0, 1.0, 1.0]  # benign side: no safety margin
    foil = rows[-1]
    assert foil["foil"] and foil["response"] == "I can't help with weapons." and foil["refused"]
    res = build_pairs(rows, rule="all_pairs", min_gap=0.1)
    assert res.pairs and all(p["chosen"].startswith("It was invented") for p in res.pairs)
    assert {p["rejected"] for p in res.pairs} == {"Sorry, I can't.", "I can't help with weapons."}
    m = pair_metrics(res, 0, 0, 0.0)
    assert m["n_contrast_pairs"] == 2 and m["sources_by_kind"]["contrast"]["sampled"] == 2


def test_answered_contrast_prompt_is_paired_over_a_template_refusal() -> None:
    """A top-up contrast prompt (the policy answered it in stage 02) has no policy refusal: the foil is a template."""
    judged = [
        {
            "prompt": "history of the crossbow?",
            "response": "It was invented in China ...",
            "kind": "contrast",
            "safety": 0.0,
            "helpfulness": 0.9,
            "refused": False,
            "policy_refusal": None,
        }
    ]
    rows = pair_inputs(judged, 0.0, seed=0, benign_foil=False)
    foil = rows[-1]
    assert len(rows) == 2 and foil["foil"] and foil["refused"] and foil["helpful"] == 0.0
    assert foil["response"] != judged[0]["response"]
    res = build_pairs(rows, rule="all_pairs", min_gap=0.1)
    assert [(p["chosen"], p["rejected"]) for p in res.pairs] == [(judged[0]["response"], foil["response"])]


def test_contrast_prompt_without_a_helpful_sample_uses_revision_then_template_then_drops() -> None:
    refusals = [
        _contrast("history of the crossbow?", "Sorry, I can't.", 0.0, True, family="history", topic="the crossbow"),
        _contrast("history of the crossbow?", "I won't discuss weapons.", 0.1, True),
        _contrast("how do I kill a frozen app?", "I can't help with killing.", 0.0, True, family="homonym"),
    ]
    need = P.prompts_needing_revision(refusals, U, kind="contrast")
    assert need == [
        ("history of the crossbow?", "I won't discuss weapons."),
        ("how do I kill a frozen app?", refusals[2]["response"]),
    ]
    assert prompts_needing_revision(refusals) == []  # the harmful-side list is separate
    revised = {
        "history of the crossbow?": {
            "response": "Crossbows appeared in ancient China ...",
            "safety": 1.0,
            "helpful": 0.8,
        }
    }
    res = build_pairs(refusals, revisions=revised)
    (pair,) = res.pairs
    assert (
        pair["source"] == "self_revision"
        and pair["prompt_kind"] == "contrast"
        and pair["rejected"] in {"Sorry, I can't.", "I won't discuss weapons."}
    )
    res = build_pairs(refusals)
    (pair,) = res.pairs  # the homonym family has no template answer: dropped
    assert pair["source"] == "template" and "the crossbow" in pair["chosen"] and not pair["chosen"].startswith("Sorry")
    assert res.stats["contrast_without_helpful"] == 2 and res.stats["dropped_no_helpful"] == 1
    assert pair_metrics(res, 0, 0, 0.0)["sources_by_kind"]["contrast"] == {
        "sampled": 0,
        "self_revision": 0,
        "template": 1,
    }
    dropped = build_pairs(refusals, contrast_fallback="drop")
    assert dropped.pairs == [] and dropped.stats["dropped_no_helpful"] == 2
    with pytest.raises(ValueError, match="contrast_fallback"):
        build_pairs(refusals, contrast_fallback="refuse")


def test_subsample_keeps_contrast_share() -> None:
    pairs = [{"prompt_kind": k} for k in ["harmful"] * 6 + ["benign"] * 2 + ["contrast"] * 2]
    sub = subsample_pairs(pairs, 5, seed=0)
    assert [p["prompt_kind"] for p in sub].count("contrast") == 1
