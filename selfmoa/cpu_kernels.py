"""CPU paths of preference training: what makes a DPO step fast on a CPU, and QLoRA work there at all.

Speed (SmolLM2-135M, 2 cores, max length 192; measured numbers in each docstring):

- `completion_logps` / `grouped_token_logps`: only completion positions go through the LM head, and
  chosen and rejected answers run in groups of similar length (TRL's CPU fallback scores every position
  with several float32 passes over (tokens x vocab) tiles, about half of the step time);
- `plain_lm_head`: whether those two may replace the model's own head (no soft-capping or scaling);
- `eager_attention_on_cpu`: eager attention while training (its backward beats PyTorch's CPU SDPA).

bf16 autocast itself, with PEFT's float32 cast of LoRA inputs switched off, is entered by the trainer
(`selfmoa.preference_trainer`), since it needs the accelerator's autocast context.

QLoRA on CPUs: bitsandbytes repacks NF4 weights into an inference-only layout (no backward pass);
`unpack_cpu_4bit` undoes it and `no_cpu_repacking` keeps it off while training.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

log = logging.getLogger(__name__)

GROUP_SEQS = 8  # sequences per forward pass in `grouped_token_logps`
SCALED_HEAD_KEYS = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)


def completion_logps(hidden: Any, lm_head: Any, targets: Any, mask: Any, chunk_tokens: int = 2048) -> Any:
    """Per-token log-probabilities of the completion tokens only, from the backbone's hidden states.

    Only positions where `mask` is true go through the LM head (prompt and padding positions are
    skipped), in chunks of `chunk_tokens` to bound the temporary logits; log-softmax runs in float32 and
    its (completion tokens, vocab) output is what autograd keeps for the backward pass.

    Args:
        hidden: (N, T, H) hidden states that predict `targets` (already shifted: position t predicts t+1).
        lm_head: the output projection (a Linear; its bias, if any, is used).
        targets: (N, T) next-token ids.
        mask: (N, T) bool, True at completion positions.
        chunk_tokens: completion tokens per LM-head call.

    Returns:
        (N, T) float32 log-probabilities, 0 where `mask` is false.
    """
    import torch
    import torch.nn.functional as F

    selected = hidden[mask]
    tgt = targets[mask]
    parts = []
    for i in range(0, selected.size(0), chunk_tokens):
        logits = F.linear(selected[i : i + chunk_tokens], lm_head.weight, lm_head.bias).float()
        parts.append(logits.log_softmax(-1).gather(-1, tgt[i : i + chunk_tokens, None]).squeeze(-1))
    flat = torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)
    return torch.zeros(mask.shape, dtype=torch.float32, device=hidden.device).masked_scatter(mask, flat)


def grouped_token_logps(
    causal_lm: Any, input_ids: Any, attention_mask: Any, completion_mask: Any, group_size: int = GROUP_SEQS
) -> Any:
    """Completion-token log-probabilities of right-padded sequences, run in groups of similar length.

    A preference batch stacks chosen and rejected answers, which often differ a lot in length (a short
    refusal against a long compliant answer); padding them all to the longest wastes compute. Sequences
    are sorted by length and run through the backbone `group_size` at a time, each group cut to its own
    longest sequence; the results are identical to one padded forward pass.

    Args:
        causal_lm: a causal LM (``.base_model`` is the backbone, ``get_output_embeddings()`` the head).
        input_ids: (N, T) token ids, right-padded (TRL's preference collator).
        attention_mask: (N, T), 1 on real tokens.
        completion_mask: (N, T), 1 on completion tokens.
        group_size: sequences per forward pass.

    Returns:
        (N, T-1) float32 log-probabilities of token t+1 at position t, 0 outside completions.
    """
    import torch

    lengths = attention_mask.sum(dim=1)
    order = torch.argsort(lengths, stable=True)
    out = torch.zeros(input_ids.size(0), input_ids.size(1) - 1, dtype=torch.float32, device=input_ids.device)
    head = causal_lm.get_output_embeddings()
    for idx in order.split(group_size):
        n = int(lengths[idx].max())
        ids = input_ids[idx, :n]
        hidden = causal_lm.base_model(input_ids=ids, attention_mask=attention_mask[idx, :n], use_cache=False)
        mask = completion_mask[idx, 1:n].bool()
        out[idx, : n - 1] = completion_logps(hidden.last_hidden_state[:, :-1], head, ids[:, 1:], mask)
    return out


def plain_lm_head(model: Any) -> bool:
    """True when logits are just hidden @ W.T (+ b): no soft-capping or scaling the compact head would miss."""
    cfg = model.config.get_text_config()
    return all(getattr(cfg, k, None) in (None, 1.0) for k in SCALED_HEAD_KEYS)


@contextlib.contextmanager
def eager_attention_on_cpu(model: Any) -> Iterator[None]:
    """Use eager attention while training on a CPU: at 192 tokens its backward pass beats PyTorch's CPU SDPA.

    Measured for SmolLM2-135M (batch 8 x 192 tokens, bf16, 2 threads, best of 6): forward + backward
    1.91 s eager against 2.24 s SDPA. The model's own setting is restored afterwards.
    """
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    current = getattr(base.config, "_attn_implementation", None)
    if torch.cuda.is_available() or current != "sdpa" or not hasattr(base, "set_attn_implementation"):
        yield
        return
    base.set_attn_implementation("eager")
    try:
        yield
    finally:
        base.set_attn_implementation(current)


def unpack_cpu_4bit(model: Any) -> None:
    """Undo bitsandbytes' CPU inference repacking of NF4 weights, which has no backward pass.

    bitsandbytes 0.50 repacks a `Linear4bit` weight for a faster AVX512-bf16 CPU kernel on its first no-grad
    forward in eval mode (e.g. after generating with the policy, or in the reference pass). Training through
    repacked weights silently yields no gradients. The 4-bit codes are restored exactly; the block scales
    come back from their bfloat16 copy (relative error about 0.3%, the precision the inference kernel used).
    """
    try:
        from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse
    except ImportError:
        return
    n = 0
    for module in model.modules():
        weight = getattr(module, "weight", None)
        state = getattr(weight, "quant_state", None)
        if state is not None and getattr(state, "packing_format_for_cpu", False):
            weight.data, weight.quant_state = _convert_weight_packed_for_cpu_inverse(weight.data, state)
            n += 1
    if n:
        log.warning(
            "restored %d NF4 weights from bitsandbytes' CPU inference layout for training (block scales from bfloat16)",
            n,
        )


@contextlib.contextmanager
def no_cpu_repacking(model: Any) -> Iterator[None]:
    """Keep bitsandbytes from repacking NF4 weights for inference (see `unpack_cpu_4bit`) while training."""
    modules = [m for m in model.modules() if hasattr(m, "support_avx512bf16_for_cpu")]
    saved = [m.support_avx512bf16_for_cpu for m in modules]
    for m in modules:
        m.support_avx512bf16_for_cpu = False
    try:
        yield
    finally:
        for m, value in zip(modules, saved, strict=True):
            m.support_avx512bf16_for_cpu = value
