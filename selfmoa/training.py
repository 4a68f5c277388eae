"""Multi-objective DPO with LoRA / QLoRA: `train_preference` and the metrics of stage 06_align.

The trainer itself (TRL subclass, collator, in-memory reference pass) is `selfmoa.preference_trainer`, the
CPU speed paths are `selfmoa.cpu_kernels`, and LoRA settings come from `selfmoa.models.lora_config`.

Reference policy (no second model in memory). The reference is the policy at the start of the iteration:

- a plain model gets a fresh LoRA adapter; the reference is the same model with the adapter disabled;
- a model that already carries a trainable LoRA adapter named ``default`` from earlier iterations (e.g.
  `selfmoa.models.load_model(..., adapter=..., trainable=True)`) keeps training that adapter; TRL copies it
  into a frozen ``ref`` adapter first, so the reference is exactly the current policy. The adapter is not
  merged, which keeps 4-bit bases exact (merging into NF4 weights would re-quantize them) and makes every
  saved adapter the *whole* change from the base checkpoint: one adapter folder reproduces the policy of
  its iteration. The ``ref`` copy is deleted after training. (LoRA settings of later iterations are those
  of the existing adapter.)

Speed on CPUs (issue target: <= 0.75 s per pair per epoch at max length 192 for SmolLM2-135M on 2 cores,
against about 1.5 s for TRL's defaults): reference log-probabilities are computed once, before training
(`precompute_ref_log_probs`), instead of a reference forward pass at every step; bf16 autocast without
PEFT's per-layer float32 cast of LoRA inputs; the compact LM head and eager attention of
`selfmoa.cpu_kernels`; gradient checkpointing off by default (TRL turns it on, which costs a second
forward pass); length-bucketed batches (TRL 1.16 disables padding-free batches); no evaluation, no
checkpoints, no progress bars.

QLoRA: a model loaded in NF4 4-bit gets `prepare_model_for_kbit_training` (gradient checkpointing only
if configured) and TRL keeps its adapter weights in bfloat16. On CPUs, bitsandbytes' inference repacking
of NF4 weights (which has no backward pass) is undone before and kept off during training.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from selfmoa.config import TrainConfig

log = logging.getLogger(__name__)

STAGE_METRIC_KEYS = ("n_pairs", "steps", "seconds", "seconds_reference", "seconds_per_pair_epoch", "adapter_digest")


def _is_4bit(model: Any) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(getattr(base, "is_loaded_in_4bit", False))


def _prepare_policy(model: Any, cfg: TrainConfig) -> tuple[Any, Any]:
    """Return (model, peft_config): a fresh LoRA config for a plain model, None to keep training an adapter."""
    from peft import PeftModel, prepare_model_for_kbit_training

    from selfmoa.cpu_kernels import unpack_cpu_4bit
    from selfmoa.models import lora_config

    if _is_4bit(model):
        unpack_cpu_4bit(model)
    if isinstance(model, PeftModel):
        if model.active_adapter != "default" or set(model.peft_config) - {"default"}:
            raise ValueError(
                f"the policy carries adapters {sorted(model.peft_config)} (active "
                f"{model.active_adapter!r}); continue training needs a single adapter named 'default'"
            )
        for name, param in model.named_parameters():
            if "lora_" in name and ".default." in name:
                param.requires_grad_(True)
        return model, None
    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    return model, lora_config(cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.target_modules)


def dpo_args(cfg: TrainConfig, output_dir: str | Path, seed: int, n_pairs: int, **overrides: Any) -> Any:
    """The `trl.DPOConfig` of the fast path (see the module docstring); `overrides` replace any field."""
    import torch
    from trl import DPOConfig

    from selfmoa.models import autocast_bf16

    if cfg.bf16 and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise ValueError("train.bf16 is true but this GPU has no bf16 support; set train.bf16: false")
    micro = getattr(cfg, "micro_batch_size", 0) or cfg.batch_size  # passes accumulated into one step of batch_size
    kwargs: dict[str, Any] = {
        "output_dir": str(output_dir),
        "beta": cfg.beta,
        "learning_rate": cfg.learning_rate,
        "num_train_epochs": cfg.epochs,
        "per_device_train_batch_size": micro,
        "gradient_accumulation_steps": cfg.batch_size // micro,
        "max_length": cfg.max_length,
        "precompute_ref_log_probs": True,
        "precompute_ref_batch_size": max(cfg.batch_size, min(2 * cfg.batch_size, n_pairs)),
        "activation_checkpointing": cfg.gradient_checkpointing,
        "use_cpu": not torch.cuda.is_available(),
        "bf16": autocast_bf16(cfg.bf16),
        "weight_decay": 0.0,
        "lr_scheduler_type": "linear",
        "logging_strategy": "steps",
        "logging_steps": 1,
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
        "seed": seed,
        "data_seed": seed,
    }
    kwargs.update(overrides)
    return DPOConfig(**kwargs)


def _adapter_digest(model: Any) -> str:
    h = hashlib.sha256()
    for name, param in sorted(model.named_parameters()):
        if "lora_" in name and ".default." in name:
            h.update(name.encode())
            h.update(param.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def train_preference(
    model: Any, tokenizer: Any, pairs: Sequence[dict[str, Any]], cfg: TrainConfig, output_dir: str | Path, seed: int = 0
) -> dict[str, Any]:
    """Train the policy on preference pairs with the multi-objective DPO loss; save the LoRA adapter.

    Args:
        model: the policy, a plain causal LM (a fresh LoRA adapter is attached; NF4 4-bit models get
            QLoRA preparation) or a `PeftModel` whose trainable ``default`` adapter keeps training. The
            object is modified in place (LoRA layers are injected); use the returned ``model``.
        tokenizer: its tokenizer (chat template; a pad token is set to EOS when missing).
        pairs: dicts with prompt, chosen, rejected, safety_margin (from `selfmoa.pairs.build_pairs`).
        cfg: `TrainConfig` (beta, w_safety, w_helpful, sft_weight, learning rate, epochs, batch size,
            max length, LoRA settings, bf16, gradient checkpointing).
        output_dir: where the adapter is saved (``adapter_config.json`` + ``adapter_model.safetensors``).
        seed: seed of LoRA initialisation, batch order and dropout.

    Returns:
        dict with ``model`` (the trained PeftModel), ``adapter_dir``, ``metrics`` (one dict per optimiser
        step: loss, loss/modpo, rewards/..., learning_rate, ...), ``n_pairs`` (pairs after TRL drops
        prompts longer than max_length), ``steps``, ``seconds`` (reference pass + training),
        ``seconds_reference``, ``seconds_per_pair_epoch`` and ``adapter_digest``.
    """
    from selfmoa.cpu_kernels import eager_attention_on_cpu, no_cpu_repacking
    from selfmoa.preference_trainer import (
        MarginCollator,
        MultiObjectiveDPOTrainer,
        preference_dataset,
        unpatch_fused_head,
    )

    output_dir = Path(output_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset = preference_dataset(pairs)
    model, peft_config = _prepare_policy(model, cfg)
    t0 = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="selfmoa-dpo-") as scratch,
        _quiet(),
        no_cpu_repacking(model),
        eager_attention_on_cpu(model),
    ):
        try:
            trainer = MultiObjectiveDPOTrainer(
                model=model,
                args=dpo_args(cfg, scratch, seed, len(dataset)),
                train_dataset=dataset,
                processing_class=tokenizer,
                peft_config=peft_config,
                w_safety=cfg.w_safety,
                w_helpful=cfg.w_helpful,
                sft_weight=cfg.sft_weight,
                bucket_seed=seed,
                data_collator=MarginCollator(pad_token_id=tokenizer.pad_token_id, max_length=cfg.max_length),
            )
            t_ref = time.perf_counter() - t0
            result = trainer.train()
        finally:
            unpatch_fused_head(model)
    seconds = time.perf_counter() - t0
    policy = trainer.trained_policy()
    output_dir.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(str(output_dir))
    digest = _adapter_digest(policy)
    policy.selfmoa_adapter_ids = [*getattr(policy, "selfmoa_adapter_ids", []), f"{output_dir}#{digest}"]
    n_used = len(trainer.train_dataset)
    steps = [
        {k: v for k, v in entry.items() if k not in ("epoch", "total_flos")} | {"step": entry.get("step")}
        for entry in trainer.state.log_history
        if "loss" in entry
    ]
    log.info(
        "trained on %d pairs, %d steps, %.1f s (%.2f s per pair per epoch)",
        n_used,
        result.global_step,
        seconds,
        seconds / max(1, n_used * cfg.epochs),
    )
    return {
        "model": policy,
        "adapter_dir": str(output_dir),
        "adapter_digest": digest,
        "metrics": steps,
        "n_pairs": n_used,
        "steps": result.global_step,
        "seconds": seconds,
        "seconds_reference": t_ref,
        "seconds_per_pair_epoch": seconds / max(1, n_used * cfg.epochs),
    }


def stage_metrics(result: dict[str, Any]) -> dict[str, Any]:
    """The summary of one `train_preference` result: `metrics.json` of 06_align and a variant's ``train``.

    Keys: n_pairs, steps, seconds, seconds_reference, seconds_per_pair_epoch, adapter_digest, and the
    loss at the first and last optimiser step (None without steps).
    """
    steps = result["metrics"]
    return {k: result[k] for k in STAGE_METRIC_KEYS} | {
        "first_loss": steps[0].get("loss") if steps else None,
        "last_loss": steps[-1].get("loss") if steps else None,
    }


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence transformers' info/warnings and datasets' progress bars for the duration (restored after)."""
    import datasets
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), not datasets.are_progress_bars_disabled()
    hf_logging.set_verbosity_error()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            datasets.enable_progress_bars()
