"""Stage 03: the prompts the policy answers K times, and the samples it gives.

The policy answers this round's kept attack prompts and a fresh draw of benign training prompts,
`sampling.k` times each at `sampling.temperature` (a `selfmoa.policy.Responder` with purpose 'sample').
Attack prompts give the pairs that teach safety; benign prompts give the pairs that keep the policy helpful.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def stage_prompts(attacks: Sequence[dict[str, Any]], benign: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Prompt rows (`prompt_id`, `prompt`, `kind` 'harmful' or 'benign', `category`): attacks first, then benign."""
    rows = [(a, "harmful") for a in attacks] + [(b, "benign") for b in benign]
    return [
        {"prompt_id": r["id"], "prompt": r["prompt"], "kind": kind, "category": r.get("category")} for r, kind in rows
    ]


def sample(respond: Any, prompts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per sampled answer: the prompt row plus `sample` (index) and `response`.

    Args:
        respond: a `Responder` (its `respond` gives `k` answers per prompt).
        prompts: rows from `stage_prompts`.
    """
    outs = respond.respond([p["prompt"] for p in prompts])
    return [{**p, "sample": j, "response": r} for p, rs in zip(prompts, outs, strict=True) for j, r in enumerate(rs)]


def sample_metrics(prompts: Sequence[dict[str, Any]], samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Stage 03's metrics: prompt counts by kind, sample count, share of empty answers."""
    return {
        "n_prompts": len(prompts),
        "n_harmful": sum(p["kind"] == "harmful" for p in prompts),
        "n_benign": sum(p["kind"] == "benign" for p in prompts),
        "n_samples": len(samples),
        "empty_fraction": sum(not s["response"].strip() for s in samples) / max(len(samples), 1),
    }
