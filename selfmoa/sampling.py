"""Stage 03: the prompts the policy answers K times, and the samples it gives.

The policy answers this round's kept attack prompts, a fresh draw of benign training prompts and the
round's contrast prompts (benign prompts that look harmful and that the policy refused in stage 02),
`sampling.k` times each at `sampling.temperature` (a `selfmoa.policy.Responder` with purpose 'sample').
Attack prompts give the pairs that teach safety; benign prompts give the pairs that keep the policy helpful;
contrast prompts give the pairs that teach a helpful answer over a refusal (not from the paper).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def stage_prompts(
    attacks: Sequence[dict[str, Any]], benign: Sequence[dict[str, Any]], contrasts: Sequence[dict[str, Any]] = ()
) -> list[dict[str, Any]]:
    """Prompt rows (`prompt_id`, `prompt`, `kind`, `category`): attacks ('harmful'), benign prompts ('benign'),
    then the contrast prompts of stage 02 ('contrast', with `policy_refusal`: the refusal stage 02 saw, None for a
    prompt the policy answered (kept by `redteam.contrast_top_up`), and the safe-twin `family` and `topic`).

    A contrast prompt whose text is already an attack or benign prompt of the round is left out (one prompt,
    one kind).
    """
    from selfmoa.text import text_key

    rows = [(a, "harmful") for a in attacks] + [(b, "benign") for b in benign]
    taken = {text_key(r["prompt"]) for r, _ in rows}
    out = [
        {"prompt_id": r["id"], "prompt": r["prompt"], "kind": kind, "category": r.get("category")} for r, kind in rows
    ]
    for c in contrasts:
        if text_key(c["prompt"]) in taken:
            continue
        taken.add(text_key(c["prompt"]))
        out.append(
            {
                "prompt_id": c["id"],
                "prompt": c["prompt"],
                "kind": "contrast",
                "category": c.get("category"),
                "policy_refusal": c.get("answer") if c.get("refused") else None,
                "family": c.get("family"),
                "topic": c.get("topic"),
            }
        )
    return out


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
        "n_contrast": sum(p["kind"] == "contrast" for p in prompts),
        "n_samples": len(samples),
        "empty_fraction": sum(not s["response"].strip() for s in samples) / max(len(samples), 1),
    }
