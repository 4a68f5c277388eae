"""Stage 04: sampled answers scored by the training judges, and what the scores say.

`judge_rows` adds `safety` and `helpfulness` (None where a judge could not decide: *unscored*, never 0),
`refused` (refusal phrases) and the judge ids to each row; stage 07 scores its held-out answers the same
way with the evaluation judges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def refused_flags(responses: Sequence[str]) -> list[bool]:
    """The refusal decision every judged row carries (`refused`): the refusal judge's phrase rules.

    Stage 02 uses the same decision to keep the contrast prompts the policy refuses.
    """
    from selfmoa.judges.refusal import is_refusal

    return [bool(is_refusal(r)) for r in responses]


def judge_rows(
    rows: Sequence[dict[str, Any]], judges: tuple[Any, Any], response_key: str = "response"
) -> list[dict[str, Any]]:
    """Each row with `safety`, `helpfulness` (None where unscored), `refused` and the two judge ids.

    Args:
        rows: dicts with `prompt` and `response_key`.
        judges: (safety, helpfulness) ensembles (`selfmoa.judges.factory.stage_judges`).
        response_key: the field holding the answer.
    """
    safety_judge, helpful_judge = judges
    prompts = [r["prompt"] for r in rows]
    responses = [r[response_key] for r in rows]
    s = safety_judge.score(prompts, responses)
    h = helpful_judge.score(prompts, responses)
    refused = refused_flags(responses)
    return [
        {
            **r,
            "safety": None if s.unscored[i] else float(s.values[i]),
            "helpfulness": None if h.unscored[i] else float(h.values[i]),
            "refused": refused[i],
            "safety_judge": s.judge_id,
            "helpfulness_judge": h.judge_id,
        }
        for i, r in enumerate(rows)
    ]


def unscored_fraction(rows: Sequence[dict[str, Any]], key: str) -> float:
    """Share of rows whose `key` score is missing."""
    return float(np.mean([r.get(key) is None for r in rows])) if rows else 0.0


def mean_of(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    """Mean of the scored values of `key` (None when nothing is scored)."""
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def _rate(flags: list[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


def judge_metrics(judged: Sequence[dict[str, Any]], unsafe_below: float) -> dict[str, Any]:
    """Stage 04's metrics: unscored fractions, attack success rate on all K samples of the harmful prompts,
    mean safety and helpfulness, refusal rates (`harmful_refusal`; `over_refusal` on benign prompts;
    `contrast_refusal` on the contrast prompts of stage 02, all K samples), judge ids."""
    from selfmoa.evaluation import attack_success_rate

    harm = [r for r in judged if r["kind"] == "harmful"]
    benign = [r for r in judged if r["kind"] == "benign"]
    contrast = [r for r in judged if r["kind"] == "contrast"]
    first = judged[0] if judged else {}
    return {
        "n": len(judged),
        "safety_unscored_fraction": unscored_fraction(judged, "safety"),
        "helpfulness_unscored_fraction": unscored_fraction(judged, "helpfulness"),
        "attack_success_rate": attack_success_rate([r["safety"] for r in harm], unsafe_below),
        "harmful_mean_safety": mean_of(harm, "safety"),
        "benign_mean_helpfulness": mean_of(benign, "helpfulness"),
        "harmful_refusal": _rate([r["refused"] for r in harm]),
        "over_refusal": _rate([r["refused"] for r in benign]),
        "contrast_refusal": _rate([r["refused"] for r in contrast]),
        "contrast_mean_helpfulness": mean_of(contrast, "helpfulness"),
        "safety_judge": first.get("safety_judge"),
        "helpfulness_judge": first.get("helpfulness_judge"),
    }
