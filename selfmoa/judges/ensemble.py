"""Weighted ensembles of judges.

value_i = sum_j w_j v_ij / sum_j w_j over the members j that scored item i; an item is unscored only
when every member left it unscored (it is never filled with 0).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from selfmoa.judges.base import Judge, Judgements, check_aspect, check_inputs


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Weights must be finite and >= 0 with at least one > 0; zero-weight members are dropped."""
    for name, w in weights.items():
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"judge weight {name}={w}: weights must be finite and >= 0")
    kept = {n: float(w) for n, w in weights.items() if w > 0}
    if not kept:
        raise ValueError(f"judge weights {dict(weights)}: at least one weight must be > 0")
    return kept


def combine(
    members: Mapping[str, Judgements],
    weights: Mapping[str, float],
    judge_id: str = "ensemble",
    aspect: str | None = None,
) -> Judgements:
    """Weighted mean of member judgements over the members that scored each item (pure)."""
    weights = check_weights(weights)
    missing = sorted(set(weights) - set(members))
    if missing:
        raise ValueError(f"combine: no judgements for weighted members {missing}")
    names = list(weights)
    lengths = {len(members[n]) for n in names}
    if len(lengths) != 1:
        raise ValueError(f"combine: members scored different numbers of items {lengths}")
    aspects = {members[n].aspect for n in names}
    if aspect is None:
        if len(aspects) != 1:
            raise ValueError(f"combine: members judge different aspects {aspects}")
        aspect = aspects.pop()
    vals = np.stack([members[n].values for n in names])  # (m, n)
    scored = np.stack([~members[n].unscored for n in names])
    w = np.array([weights[n] for n in names])[:, None] * scored
    total = w.sum(axis=0)
    value = np.where(total > 0, (np.nan_to_num(vals) * w).sum(axis=0) / np.maximum(total, 1e-30), np.nan)
    version = "+".join(f"{n}:{weights[n]:g}:{members[n].template_version}" for n in names)
    return Judgements(value, total <= 0, judge_id, version, aspect, members={n: members[n] for n in names})


class EnsembleJudge:
    """Scores with every member and combines them with `combine`."""

    def __init__(self, members: Mapping[str, Judge], weights: Mapping[str, float], aspect: str) -> None:
        self.aspect = check_aspect(aspect)
        self.weights = check_weights(weights)
        missing = sorted(set(self.weights) - set(members))
        if missing:
            raise ValueError(f"ensemble: weighted judges {missing} were not built")
        self.members = {n: members[n] for n in self.weights}
        for name, judge in self.members.items():
            if judge.aspect != aspect:
                raise ValueError(f"ensemble for {aspect}: member {name} judges {judge.aspect}")
        self.judge_id = "ensemble(" + ",".join(f"{n}={w:g}" for n, w in self.weights.items()) + ")"
        self.template_version = "+".join(f"{n}:{j.judge_id}:{j.template_version}" for n, j in self.members.items())

    def score(self, prompts: list[str], responses: list[str]) -> Judgements:
        """Member judgements combined; `members` of the result holds each member's judgements."""
        prompts, responses = check_inputs(prompts, responses)
        got = {n: j.score(prompts, responses) for n, j in self.members.items()}
        return combine(got, self.weights, self.judge_id, self.aspect)
