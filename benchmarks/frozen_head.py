"""Generation on a frozen policy (as after merging adapters): the output head fed a strided slice vs a contiguous copy.

A policy whose LoRA adapters were merged is frozen (PEFT leaves the base without requires_grad). For a frozen head,
`torch.matmul` does not fold the strided last-position slice of the hidden states into one matrix product and copies
the head weight once per row instead; `selfmoa.models.contiguous_head_input` (applied by `load_model`) hands the
head a contiguous copy. Baseline: the embedded policy in the project precision (`dtype: auto`), frozen, with that hook removed; project: the
same model with the hook. Both answer the same prompts greedily with `selfmoa.generation.generate` (the default
decoder, `sampling.batch_size`-style batches of `batch` rows), alternating round by round in one process. Peak RSS
of each path: `PeakRSS` sampled while that path generates (the model's own memory included). Answers must be
identical.
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import PeakRSS, check, load_policy, mixed_prompts, record, speedup, timed


def run(quick: bool = False) -> dict[str, Any]:
    """Seconds and peak RSS of greedy generation on a frozen policy, without and with the head hook."""
    from selfmoa.generation import generate

    n, batch, new_tokens, rounds = (8, 8, 4, 1) if quick else (128, 64, 16, 2)
    prompts = mixed_prompts(n)
    model, tok = load_policy("auto")
    model.requires_grad_(False)
    head = model.get_output_embeddings()
    hooks = dict(head._forward_pre_hooks)
    seconds: dict[str, float] = {"baseline": 0.0, "project": 0.0}
    peaks: dict[str, float] = {"baseline": 0.0, "project": 0.0}
    answers: dict[str, list[list[str]]] = {}
    for _ in range(rounds):
        for path in ("baseline", "project"):
            head._forward_pre_hooks.clear()
            if path == "project":
                head._forward_pre_hooks.update(hooks)
            with PeakRSS(interval=0.05) as rss:
                answers[path], s = timed(
                    generate, model, tok, prompts, max_new_tokens=new_tokens, batch_size=batch, progress=False
                )
            seconds[path] += s
            peaks[path] = max(peaks[path], rss.peak_bytes / 2**30)
    head._forward_pre_hooks.clear()
    head._forward_pre_hooks.update(hooks)
    identical = answers["baseline"] == answers["project"]
    return record(
        baseline=seconds["baseline"],
        project=seconds["project"],
        ratio=speedup(seconds["baseline"], seconds["project"], higher_is_better=False),
        ratio_definition="frozen policy: seconds with a strided head input / with contiguous_head_input",
        unit="s",
        checks=[check("identical answers", float(identical), ">=", 1.0)],
        details={
            "n_prompts": n,
            "batch_size": batch,
            "max_new_tokens": new_tokens,
            "rounds": rounds,
            "peak_rss_gib": peaks,
            "identical_answers": identical,
        },
    )
