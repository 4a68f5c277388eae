"""Generation throughput: naive fp32 one-prompt-at-a-time `model.generate` vs the project's `generate`.

Same prompts (harmful and benign, from the packaged data), greedy, same chat template, `max_new_tokens`
new tokens. Baseline: the model in float32, one prompt per `model.generate` call. Project:
`selfmoa.generation.generate` with the model in the project's precision (`dtype: auto`: bfloat16 on a CPU
with native bf16, float32 elsewhere; `selfmoa.models.resolve_dtype`), length-sorted batches of the configured size
(`SamplingConfig.batch_size`), no on-disk cache, on the fast decoder (`selfmoa.fast_decode`; the stages' default
decoder is the reference).
Reference: the same call with `decoder="reference"` (`model.generate` on the same batches). The three
paths alternate batch by batch (`rounds`), so background load on a shared machine hits them alike.
Throughput counts only generated tokens up to and including the first end-of-sequence token (padding
after it is not work done), counted the same way for every path from the returned text (`tokens_from_text`).

Also: one-stream tokens/s (project precision) of both decoders against the memory-bandwidth limit (measured read
bandwidth / bytes of weights read per token) and against the floor of its matrix-vector products alone
(`one_row_linears`: every linear layer applied to one row, with all threads and with one), tokens/s of the fast
decoder against the batch size, and
whether the precision, batching or the decoder change outputs: the share of answers whose first 16 tokens equal
the fp32 answer's, the share of identical answers between the two decoders, and the refusal rates
(`selfmoa.judges.refusal.is_refusal`) with a 2-standard-error noise band. The CPU model and its bf16/AMX
flags are in the record's `run.cpu` (`benchmarks.common.cpu_info`). `compute`: the matmul peak in the project's
precision (256 x 2048 x 2048, best of 5) and the generated tokens/s it allows at 2 FLOPs per parameter for every
prompt and generated token (`compute_limit`), an upper bound for any decoder: where it is below the 450 tokens/s
target, no decoder in that precision meets the target on these prompts.
"""

from __future__ import annotations

import math
from typing import Any

from benchmarks.common import (
    check,
    load_policy,
    matmul_peak,
    memory_bandwidth,
    mixed_prompts,
    one_row_linears,
    record,
    speedup,
    timed,
)

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


def compute_limit(n_params: int, peak_gflops: float, prompt_tokens: int, generated_tokens: int) -> dict[str, float]:
    """Generated tokens/s a decoder could reach if every weight's multiply-add ran at the CPU's matmul peak.

    Every token a model processes, prompt (prefill) or generated, costs at least 2 FLOPs per parameter (with
    tied embeddings the output head is the embedding matrix, and the lookup itself is free); attention over the
    cache and padding only add to it. So no decoder or batch size in that precision generates faster than
    `tokens_per_s_limit` on these prompts.
    """
    flops = 2.0 * n_params
    per_generated = flops * (1.0 + prompt_tokens / generated_tokens)
    return {
        "matmul_peak_gflops": peak_gflops,
        "flops_per_token": flops,
        "prompt_tokens": prompt_tokens,
        "generated_tokens": generated_tokens,
        "tokens_per_s_limit": peak_gflops * 1e9 / per_generated,
    }


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


def _refusal_noise(a: float, b: float, n: int) -> float:
    """Two standard errors of the difference of two refusal rates measured on `n` prompts each."""
    return 2 * math.sqrt((a * (1 - a) + b * (1 - b)) / n)


def _timed_generate(model: Any, tok: Any, prompts: list[str], **kw: Any) -> tuple[list[str], float]:
    from selfmoa.generation import generate

    outs, seconds = timed(generate, model, tok, prompts, progress=False, **kw)
    return [o[0] for o in outs], seconds


def batch_sweep(model: Any, tok: Any, prompts: list[str], max_new: int, sizes: tuple[int, ...]) -> dict[str, Any]:
    """Tokens/s of the fast decoder on all `prompts` at each batch size (greedy, `max_new` new tokens)."""
    rows = {}
    for size in sizes:
        texts, seconds = _timed_generate(model, tok, prompts, max_new_tokens=max_new, batch_size=size, decoder="fast")
        tokens = _generated_tokens(tok, texts, max_new)
        rows[str(size)] = {"seconds": seconds, "tokens": tokens, "tokens_per_s": tokens / seconds}
    best = max(rows, key=lambda k: rows[k]["tokens_per_s"])
    return {"by_batch_size": rows, "best_batch_size": int(best)}


def run(quick: bool = False) -> dict[str, Any]:
    """Measure the naive baseline and both decoders on the same prompts; see the module docstring."""
    from selfmoa.config import SamplingConfig
    from selfmoa.generation import chat_texts
    from selfmoa.models import resolve_dtype

    batch_size = SamplingConfig().batch_size
    n_prompts, max_new, n_stream = (4, 16, 2) if quick else (64, 64, 8)
    sizes = (2, 4) if quick else (4, 8, 16, 32, 64)
    if quick:
        batch_size = 4
    prompts = mixed_prompts(n_prompts)
    bandwidth = memory_bandwidth(1 << 28 if quick else 1 << 30)

    model32, tok = load_policy("float32")
    project_dtype = resolve_dtype("auto")  # the project's precision (bf16 only where the CPU computes it natively)
    model16, tok16 = load_policy(project_dtype)
    kw = {"max_new_tokens": max_new, "batch_size": batch_size}
    # first fast call in this process: warms up whatever the decoder prepares once
    _, warmup_s = _timed_generate(model16, tok16, prompts[:2], decoder="fast", **kw)
    texts = {"baseline": [""] * n_prompts, "reference": [""] * n_prompts, "fast": [""] * n_prompts}
    seconds = dict.fromkeys(texts, 0.0)
    exact_tokens = 0
    for batch in rounds(tok16, prompts, batch_size):
        chunk = [prompts[i] for i in batch]
        (outs, counts), s = timed(naive_generate, model32, tok, chunk, max_new)
        seconds["baseline"], exact_tokens = seconds["baseline"] + s, exact_tokens + sum(counts)
        got = {"baseline": outs}
        for decoder in ("reference", "fast"):
            got[decoder], s = _timed_generate(model16, tok16, chunk, decoder=decoder, **kw)
            seconds[decoder] += s
        for name, outs in got.items():
            for i, o in zip(batch, outs, strict=True):
                texts[name][i] = o
    del model32
    tokens = {name: _generated_tokens(tok, t, max_new) for name, t in texts.items()}
    tps = {name: tokens[name] / seconds[name] for name in texts}

    # one stream: both decoders prompt by prompt, alternating
    stream_texts: dict[str, list[str]] = {"reference": [], "fast": []}
    stream_s = {"reference": 0.0, "fast": 0.0}
    for p in prompts[:n_stream]:
        for decoder in stream_texts:
            out, s = _timed_generate(model16, tok16, [p], max_new_tokens=max_new, batch_size=1, decoder=decoder)
            stream_texts[decoder] += out
            stream_s[decoder] += s
    stream_tps = {d: _generated_tokens(tok16, t, max_new) / stream_s[d] for d, t in stream_texts.items()}
    params = list(model16.parameters())
    weight_bytes = sum(p.numel() * p.element_size() for p in params)
    limit_tps = bandwidth["best_gbs"] * 1e9 / weight_bytes
    linears = one_row_linears(model16)
    floor_tps = linears["all_threads"]["tokens_per_s"]
    n_params = sum(p.numel() for p in params)
    prompt_tokens = sum(len(i) for i in _ids(tok16, chat_texts(tok16, prompts)))
    compute = compute_limit(n_params, matmul_peak(project_dtype, rows=256), prompt_tokens, tokens["fast"])
    sweep = batch_sweep(model16, tok16, prompts, max_new, sizes)

    ratio = speedup(tps["baseline"], tps["fast"])
    rates = {name: _refusal_rate(t) for name, t in texts.items()}
    ids = {name: _ids(tok, t) for name, t in texts.items()}
    details = {
        "n_prompts": n_prompts,
        "max_new_tokens": max_new,
        "project_batch_size": batch_size,
        "project_decoder": "fast",
        "fast_warmup_seconds": warmup_s,
        "baseline": {
            "dtype": "float32",
            "seconds": seconds["baseline"],
            "tokens": tokens["baseline"],
            "tokens_exact": exact_tokens,
        },
        "project": {"dtype": project_dtype, "decoder": "fast", "seconds": seconds["fast"], "tokens": tokens["fast"]},
        "reference": {
            "dtype": project_dtype,
            "decoder": "reference (model.generate)",
            "seconds": seconds["reference"],
            "tokens": tokens["reference"],
            "tokens_per_s": tps["reference"],
            "ratio_to_baseline": speedup(tps["baseline"], tps["reference"]),
        },
        "fast_over_reference": speedup(tps["reference"], tps["fast"]),
        "one_stream": {
            "dtype": project_dtype,
            "n_prompts": n_stream,
            "seconds": stream_s["fast"],
            "tokens_per_s": stream_tps["fast"],
            "reference_seconds": stream_s["reference"],
            "reference_tokens_per_s": stream_tps["reference"],
            "weight_bytes_per_token": weight_bytes,
            "memory_bandwidth": bandwidth,
            "bandwidth_limit_tokens_per_s": limit_tps,
            "fraction_of_limit": stream_tps["fast"] / limit_tps,
            "reference_fraction_of_limit": stream_tps["reference"] / limit_tps,
            "linear_layers_one_row": linears,
            "linear_floor_tokens_per_s": floor_tps,
            "fraction_of_linear_floor": stream_tps["fast"] / floor_tps,
        },
        "batch_size_sweep_fast": sweep,
        "compute": {**compute, "project_fraction_of_compute_limit": tps["fast"] / compute["tokens_per_s_limit"]},
        "quality": {
            f"identical_first_{PREFIX_TOKENS}_tokens_share": same_prefix_share(ids["baseline"], ids["fast"]),
            f"identical_first_{PREFIX_TOKENS}_tokens_share_reference": same_prefix_share(
                ids["baseline"], ids["reference"]
            ),
            # the same comparison without batching isolates the effect of the precision alone
            f"identical_first_{PREFIX_TOKENS}_tokens_share_one_stream": same_prefix_share(
                ids["baseline"][:n_stream], _ids(tok, stream_texts["fast"])
            ),
            "identical_answers_fast_vs_reference": sum(
                a == b for a, b in zip(texts["fast"], texts["reference"], strict=True)
            )
            / n_prompts,
            "refusal_rate_fp32_baseline": rates["baseline"],
            "refusal_rate_project": rates["fast"],
            "refusal_rate_reference": rates["reference"],
            "refusal_rate_diff": rates["fast"] - rates["baseline"],
            "refusal_diff_noise_2se": _refusal_noise(rates["baseline"], rates["fast"], n_prompts),
            "refusal_rate_diff_fast_vs_reference": rates["fast"] - rates["reference"],
        },
    }
    checks = [
        check("speedup", ratio, ">=", 20.0),
        check("project tokens/s", tps["fast"], ">=", 450.0),
        check("one-stream fraction of bandwidth limit", stream_tps["fast"] / limit_tps, ">=", 0.5),
        check(
            "refusal rate change within noise",
            abs(rates["fast"] - rates["baseline"]) - _refusal_noise(rates["baseline"], rates["fast"], n_prompts),
            "<=",
            0.0,
        ),
    ]
    return record(
        baseline=tps["baseline"],
        project=tps["fast"],
        ratio=ratio,
        ratio_definition="project (fast decoder) / baseline tokens per second",
        unit="generated tokens/s",
        checks=checks,
        details=details,
    )
