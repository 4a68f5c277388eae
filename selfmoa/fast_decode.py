"""Fast decoding: a hand-written loop over the model's forward with a pre-allocated (static) KV cache.

`transformers`' `model.generate` spends much of each decoding step outside the model on a small CPU model:
input preparation, mask building, logits processors, stopping criteria and cache bookkeeping. This module
decodes a left-padded batch with a plain loop instead: one prefill forward, then one forward per token
into a `StaticCache` sized for the batch, greedy `argmax` or temperature/top-p sampling done exactly as
`generate` does it (same operations, same random draws), and an early stop once every sequence has ended.
With the same weights and dtype it gives the reference path's tokens (fp32: identical, checked by
tests/unit/test_fast_decode.py); the figures behind choosing it are in benchmarks/results.json
(`generation`).

The `compact` decoder is the same loop, except that it drops the rows that have ended from the batch (and
from its KV cache) once a quarter of the batch has ended, so that the remaining rows decode in a smaller batch:
same tokens for each row in exact arithmetic, but in bf16 a row's values depend on the batch it is in, and
sampled rows draw from a different random stream than `generate` (this project's choice; see
benchmarks/results.json, `decoders`).

`unsupported_reason` names what this loop does not handle (PEFT-wrapped or quantised models, models that
cannot use a static cache, a repetition penalty, a non-CPU device); `selfmoa.generation` then uses the
reference path (`model.generate`) for that call.
"""

from __future__ import annotations

from typing import Any

DECODERS = ("fast", "compact", "reference")
FAST_DECODERS = ("fast", "compact")  # the hand-written loop, without and with dropping ended rows
COMPACT_FRACTION = 0.25  # drop ended rows once they are this share of the batch (copying the cache costs about a step)


def check_decoder(name: str) -> str:
    """`name` if it is a known decoder, else a ValueError naming the allowed values."""
    if name not in DECODERS:
        raise ValueError(f"unknown decoder {name!r}; use one of {list(DECODERS)} (config field sampling.decoder)")
    return name


def unsupported_reason(model: Any, repetition_penalty: float = 1.0) -> str | None:
    """Why the fast loop cannot decode with `model` and these settings, or None when it can.

    The loop calls the model's own forward with a `StaticCache`, so it handles plain and merged models of
    architectures that support a static cache; PEFT-wrapped models (adapters not merged), bitsandbytes
    quantised models, a repetition penalty and non-CPU devices go to the reference path.
    """
    if repetition_penalty != 1.0:
        return f"repetition_penalty={repetition_penalty} (only 1.0 is implemented)"
    if getattr(model, "peft_config", None):
        return "PEFT-wrapped model (merge the adapters to decode it fast)"
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
        return "bitsandbytes-quantised model"
    if getattr(model, "quantization_config", None) is not None or getattr(model, "hf_quantizer", None) is not None:
        return "quantised model"
    if not getattr(model, "_can_compile_fullgraph", False):
        return f"{type(model).__name__} does not support a static KV cache"
    device = getattr(model, "device", None)
    if device is None or getattr(device, "type", "cpu") != "cpu":
        return f"device {device} (the fast loop is measured on the CPU only)"
    if getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return "encoder-decoder model"
    return None


def eos_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """End-of-sequence ids as `generate` uses them: the generation config's, else the tokenizer's."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = tokenizer.eos_token_id
    ids = eos if isinstance(eos, list | tuple) else [eos]
    return [int(i) for i in ids if i is not None]


def next_tokens(logits: Any, temperature: float, top_p: float) -> Any:
    """Next token ids from float32 last-position logits (batch, vocab), as `generate` picks them.

    Greedy (`temperature` 0): argmax. Sampling: logits / temperature (skipped at 1.0), top-p filtering
    (tokens whose ascending cumulative probability is <= 1 - top_p are dropped, the most likely one is
    always kept), softmax and one `torch.multinomial` draw per row: the same operations and random draws
    as transformers' `TemperatureLogitsWarper`, `TopPLogitsWarper` and `_sample`.
    """
    import torch

    if temperature <= 0:
        return torch.argmax(logits, dim=-1)
    scores = logits / temperature if temperature != 1.0 else logits
    if top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(scores, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cumulative <= (1 - top_p)
        remove_sorted[..., -1:] = 0
        remove = remove_sorted.scatter(1, sorted_idx, remove_sorted)
        scores = scores.masked_fill(remove, -float("inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, num_samples=1).squeeze(1)


def keep_rows(cache: Any, keep: Any) -> None:
    """Keep only the batch rows `keep` of every layer of a filled `StaticCache` (its keys and values)."""
    for layer in cache.layers:
        layer.keys = layer.keys.index_select(0, keep)
        layer.values = layer.values.index_select(0, keep)
        layer.batch_size = len(keep)


def decode(
    model: Any,
    input_ids: Any,
    attention_mask: Any,
    *,
    max_new_tokens: int,
    eos_ids: list[int],
    pad_id: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    compact: bool = False,
) -> Any:
    """New token ids (batch, <= max_new_tokens) for a left-padded batch; rows that ended hold `pad_id`.

    One prefill forward over the prompts, then one forward per token into a `StaticCache` of
    prompt length + `max_new_tokens` positions. Decoding stops early once every row has produced an
    end-of-sequence token. With `compact`, rows that have ended leave the batch and the cache once they
    are `COMPACT_FRACTION` of it. Random draws (sampling) come from torch's global generator: seed it first.
    """
    import torch
    from transformers import StaticCache

    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    batch, prompt_len = input_ids.shape
    total = prompt_len + max_new_tokens
    cache = StaticCache(config=model.config, max_cache_len=total)
    mask = torch.zeros(batch, total, dtype=attention_mask.dtype)
    mask[:, :prompt_len] = attention_mask
    positions = (attention_mask.long().cumsum(-1) - 1).clamp_(min=0)
    eos = torch.tensor(eos_ids, dtype=torch.long)
    out = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long)
    unfinished = torch.ones(batch, dtype=torch.long)
    rows = torch.arange(batch)  # the original row of each row still in the batch
    with torch.inference_mode():
        logits = model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits
        position = positions[:, -1:]
        for step in range(max_new_tokens):
            tokens = next_tokens(logits[:, -1].to(dtype=torch.float32), temperature, top_p)
            tokens = tokens * unfinished + pad_id * (1 - unfinished)
            out[rows, step] = tokens
            unfinished = unfinished & ~torch.isin(tokens, eos)
            if step == max_new_tokens - 1 or not bool(unfinished.any()):
                return out[:, : step + 1]
            if compact and int((unfinished == 0).sum()) >= max(1, COMPACT_FRACTION * len(rows)):
                keep = unfinished.nonzero().squeeze(1)
                keep_rows(cache, keep)
                rows, mask, position, tokens = rows[keep], mask[keep], position[keep], tokens[keep]
                unfinished = unfinished[keep]
            mask[:, prompt_len + step] = 1
            position = position + 1
            logits = model(
                input_ids=tokens[:, None],
                attention_mask=mask,
                position_ids=position,
                past_key_values=cache,
                use_cache=True,
            ).logits
    return out


def generate_batch(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    n: int,
    seed: int,
    compact: bool = False,
) -> list[list[str]]:
    """`n` answers per chat-formatted text (stripped), the fast counterpart of `generation._generate_batch`.

    The batch is tokenised with left padding, each text is repeated `n` times (as `num_return_sequences`
    does) and torch's generator is seeded with `seed` right before decoding, as on the reference path.
    """
    import torch

    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    ids = enc["input_ids"].repeat_interleave(n, dim=0)
    mask = enc["attention_mask"].repeat_interleave(n, dim=0)
    torch.manual_seed(seed)
    new = decode(
        model,
        ids,
        mask,
        max_new_tokens=max_new_tokens,
        eos_ids=eos_token_ids(model, tokenizer),
        pad_id=int(tokenizer.pad_token_id),
        temperature=temperature,
        top_p=top_p,
        compact=compact,
    )
    decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
    return [[d.strip() for d in decoded[i * n : (i + 1) * n]] for i in range(len(texts))]
