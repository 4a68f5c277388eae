"""Generation throughput: naive fp32 one-prompt-at-a-time `model.generate` vs the project's `generate`.

Same prompts (harmful and benign, from the packaged data), greedy, same chat template, `max_new_tokens`
new tokens. Baseline: the model in float32, one prompt per `model.generate` call. Project:
`selfmoa.generation.generate` with the model in bfloat16, length-sorted batches, no on-disk cache (the
KV cache of `model.generate` is on in both). The two paths alternate batch by batch (`rounds`), so
background load on a shared machine hits both alike. Throughput counts only generated tokens up to and
including the first end-of-sequence token (padding after it is not work done), counted the same way for
both paths from the returned text (`tokens_from_text`).

Also: one-stream bf16 tokens/s against the memory-bandwidth limit (measured read bandwidth / bytes of
weights read per token), and whether bf16 + batching changes outputs: the share of answers whose first
16 tokens equal the fp32 answer's, and the refusal rates of both (`selfmoa.judges.refusal.is_refusal`).
"""

from __future__ import annotations

import math
from typing import Any

from benchmarks.common import check, load_policy, memory_bandwidth, mixed_prompts, record, speedup, timed

PREFIX_TOKENS = 16


def tokens_from_text(n_text_tokens: int, max_new_tokens: int) -> int:
    """Generated tokens behind an answer of `n_text_tokens`: plus the EOS token when it stopped early."""
    return max_new_tokens if n_text_tokens >= max_new_tokens else n_text_tokens + 1


def count_until_eos(ids: list[int], eos_ids: set[int]) -> int:
    """Number of generated ids up to and including the first EOS (all of them when there is none)."""
    for i, t in enumerate(ids):
        if t in eos_ids:
            return i + 1
    return len(ids)


def same_prefix_share(a: list[list[int]], b: list[list[int]], k: int = PREFIX_TOKENS) -> float:
    """Share of positions i where the first `k` ids of a[i] and b[i] are identical."""
    if len(a) != len(b) or not a:
        raise ValueError(f"need two equally long, non-empty lists of token ids, got {len(a)} and {len(b)}")
    return sum(x[:k] == y[:k] for x, y in zip(a, b, strict=True)) / len(a)


def _eos_ids(model: Any, tok: Any) -> set[int]:
    eos = model.generation_config.eos_token_id
    ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
    return ids | {tok.eos_token_id}


def naive_generate(model: Any, tok: Any, prompts: list[str], max_new_tokens: int) -> tuple[list[str], list[int]]:
    """Baseline: one greedy `model.generate` call per prompt; (stripped answers, exact token counts)."""
    import torch

    from selfmoa.generation import chat_texts

    eos = _eos_ids(model, tok)
    texts, counts = [], []
    for text in chat_texts(tok, prompts):
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **enc,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tok.pad_token_id,
            )
        new = out[0, enc["input_ids"].shape[1] :].tolist()
        counts.append(count_until_eos(new, eos))
        texts.append(tok.decode(new, skip_special_tokens=True).strip())
    return texts, counts


def rounds(tok: Any, prompts: list[str], batch_size: int) -> list[list[int]]:
    """Prompt indices in the project's own length-sorted batches; both paths run round by round.

    Alternating the two paths batch by batch exposes both to the same background load, and `generate`
    called on one such batch does exactly the work it does for that batch in a call on all prompts.
    """
    from selfmoa.generation import chat_texts, length_sorted_batches

    lengths = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in chat_texts(tok, prompts)]
    return length_sorted_batches(lengths, batch_size)


def _ids(tok: Any, texts: list[str]) -> list[list[int]]:
    return [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def _generated_tokens(tok: Any, texts: list[str], max_new_tokens: int) -> int:
    return sum(tokens_from_text(len(ids), max_new_tokens) for ids in _ids(tok, texts))


def _refusal_rate(texts: list[str]) -> float:
    from selfmoa.judges.refusal import is_refusal

    return sum(map(is_refusal, texts)) / len(texts)


def run(quick: bool = False) -> dict[str, Any]:
    """Measure both paths on the same prompts; see the module docstring."""
    from selfmoa.generation import generate

    n_prompts, max_new, batch_size, n_stream = (4, 16, 4, 2) if quick else (64, 64, 32, 8)
    prompts = mixed_prompts(n_prompts)
    bandwidth = memory_bandwidth(1 << 28 if quick else 1 << 30)

    model32, tok = load_policy("float32")
    model16, tok16 = load_policy("bfloat16")
    kw = {"max_new_tokens": max_new, "progress": False}
    base_texts, proj_texts = [""] * n_prompts, [""] * n_prompts
    exact_tokens, base_s, proj_s = 0, 0.0, 0.0
    for batch in rounds(tok16, prompts, batch_size):
        chunk = [prompts[i] for i in batch]
        (texts, counts), seconds = timed(naive_generate, model32, tok, chunk, max_new)
        base_s, exact_tokens = base_s + seconds, exact_tokens + sum(counts)
        outs, seconds = timed(generate, model16, tok16, chunk, batch_size=batch_size, **kw)
        proj_s += seconds
        for i, b, o in zip(batch, texts, outs, strict=True):
            base_texts[i], proj_texts[i] = b, o[0]
    del model32
    base_tokens = _generated_tokens(tok, base_texts, max_new)
    proj_tokens = _generated_tokens(tok16, proj_texts, max_new)
    stream_out, stream_s = timed(generate, model16, tok16, prompts[:n_stream], batch_size=1, **kw)
    stream_texts = [o[0] for o in stream_out]
    stream_tokens = _generated_tokens(tok16, stream_texts, max_new)
    weight_bytes = sum(p.numel() * p.element_size() for p in model16.parameters())

    base_tps, proj_tps, stream_tps = base_tokens / base_s, proj_tokens / proj_s, stream_tokens / stream_s
    limit_tps = bandwidth["best_gbs"] * 1e9 / weight_bytes
    ratio = speedup(base_tps, proj_tps)
    r32, r16 = _refusal_rate(base_texts), _refusal_rate(proj_texts)
    noise = 2 * math.sqrt((r32 * (1 - r32) + r16 * (1 - r16)) / n_prompts)
    details = {
        "n_prompts": n_prompts,
        "max_new_tokens": max_new,
        "project_batch_size": batch_size,
        "baseline": {"dtype": "float32", "seconds": base_s, "tokens": base_tokens, "tokens_exact": exact_tokens},
        "project": {"dtype": "bfloat16", "seconds": proj_s, "tokens": proj_tokens},
        "one_stream_bf16": {
            "n_prompts": n_stream,
            "seconds": stream_s,
            "tokens": stream_tokens,
            "tokens_per_s": stream_tps,
            "weight_bytes_per_token": weight_bytes,
            "memory_bandwidth": bandwidth,
            "bandwidth_limit_tokens_per_s": limit_tps,
            "fraction_of_limit": stream_tps / limit_tps,
        },
        "quality": {
            f"identical_first_{PREFIX_TOKENS}_tokens_share": same_prefix_share(
                _ids(tok, base_texts), _ids(tok, proj_texts)
            ),
            # the same comparison without batching isolates the effect of bf16 alone
            f"identical_first_{PREFIX_TOKENS}_tokens_share_one_stream_bf16": same_prefix_share(
                _ids(tok, base_texts[:n_stream]), _ids(tok, stream_texts)
            ),
            "refusal_rate_fp32_baseline": r32,
            "refusal_rate_bf16_project": r16,
            "refusal_rate_diff": r16 - r32,
            "refusal_diff_noise_2se": noise,
        },
    }
    checks = [
        check("speedup", ratio, ">=", 20.0),
        check("project tokens/s", proj_tps, ">=", 450.0),
        check("one-stream bf16 fraction of bandwidth limit", stream_tps / limit_tps, ">=", 0.8),
    ]
    return record(
        baseline=base_tps,
        project=proj_tps,
        ratio=ratio,
        ratio_definition="project / baseline tokens per second",
        unit="generated tokens/s",
        checks=checks,
        details=details,
    )
