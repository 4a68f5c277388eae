"""Multi-objective DPO with LoRA / QLoRA through TRL's DPOTrainer (the only module touching TRL internals).

What TRL 1.16 lacks and this module adds: a per-pair safety margin in the DPO loss (`selfmoa.losses`).
`MultiObjectiveDPOTrainer` subclasses `trl.DPOTrainer`:

- the ``safety_margin`` column survives the pipeline: it is added to the trainer's signature columns (so
  `remove_unused_columns` keeps it) and a collator subclass turns it into a (B,) tensor;
- `_compute_loss` is replaced: one forward pass over [chosen; rejected], per-token log-probabilities of
  the completion tokens summed per sequence, then `modpo_loss` (plus an optional SFT term on the chosen
  answers, `chosen_nll`). On CUDA the log-probabilities come from TRL's fused LM head (Triton); on CPUs
  from `completion_logps`, which sends only completion positions through the LM head (TRL's CPU fallback
  scores every position with several float32 passes over (tokens x vocab) tiles and took about half of
  the step time).

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
(`precompute_ref_log_probs`), instead of a reference forward pass at every step; bf16 autocast, with
PEFT's per-layer cast of LoRA inputs to float32 switched off under autocast (it cost about 40% of a
forward pass); the compact LM head above; gradient checkpointing off by default (TRL turns it on, which
costs a second forward pass); batches of similar length (`LengthBucketSampler`) so little compute is
spent on padding (TRL 1.16 disables padding-free batches); no evaluation, no checkpoints, no progress bars.

QLoRA: a model loaded in NF4 4-bit gets `prepare_model_for_kbit_training` (gradient checkpointing only
if configured) and TRL keeps its adapter weights in bfloat16. On CPUs, bitsandbytes' inference repacking
of NF4 weights (which has no backward pass) is undone before and kept off during training.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import math
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from selfmoa.config import TrainConfig

log = logging.getLogger(__name__)

MARGIN_COLUMN = "safety_margin"
LENGTH_COLUMN = "length"
REQUIRED_PAIR_KEYS = ("prompt", "chosen", "rejected", MARGIN_COLUMN)
GROUP_SEQS = 8  # sequences per forward pass in `grouped_token_logps`


def preference_dataset(pairs: Sequence[dict[str, Any]]) -> Any:
    """Shape pairs into a conversational preference `datasets.Dataset` for TRL.

    Each pair (from `selfmoa.pairs.build_pairs`) needs prompt, chosen, rejected and safety_margin. The
    prompt becomes one user message and each answer one assistant message, so TRL renders them with the
    tokenizer's chat template exactly as `selfmoa.generation` does when sampling.

    Returns:
        A Dataset with columns prompt, chosen, rejected (message lists) and safety_margin (float).
    """
    from datasets import Dataset

    if not pairs:
        raise ValueError("no preference pairs to train on: build_pairs returned none (see its stats)")
    rows = []
    for i, p in enumerate(pairs):
        missing = [k for k in REQUIRED_PAIR_KEYS if k not in p]
        if missing:
            raise ValueError(f"pair {i}: missing key(s) {missing} (pairs come from selfmoa.pairs.build_pairs)")
        margin = float(p[MARGIN_COLUMN])
        if not math.isfinite(margin):
            raise ValueError(f"pair {i}: safety_margin {p[MARGIN_COLUMN]!r} is not a finite number")
        if not (p["chosen"] and p["rejected"]):
            raise ValueError(f"pair {i}: empty chosen or rejected answer")
        rows.append(
            {
                "prompt": [{"role": "user", "content": p["prompt"]}],
                "chosen": [{"role": "assistant", "content": p["chosen"]}],
                "rejected": [{"role": "assistant", "content": p["rejected"]}],
                MARGIN_COLUMN: margin,
            }
        )
    return Dataset.from_list(rows)


class LengthBucketSampler:
    """Batches of similar length in a random order (less padding, still shuffled).

    Each epoch: shuffle, sort stably by length (ties stay shuffled), cut into batches, shuffle the batches.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        import numpy as np

        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        order = rng.permutation(len(self.lengths))
        order = order[np.argsort(np.asarray(self.lengths)[order], kind="stable")]
        batches = [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        for b in rng.permutation(len(batches)):
            yield from (int(i) for i in batches[b])


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
        input_ids, attention_mask, completion_mask: (N, T), right-padded (TRL's preference collator).
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


@contextlib.contextmanager
def _eager_attention_on_cpu(model: Any) -> Iterator[None]:
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


def _plain_lm_head(model: Any) -> bool:
    """True when logits are just hidden @ W.T (+ b): no soft-capping or scaling that TRL's fused head applies."""
    cfg = model.config.get_text_config()
    return all(
        getattr(cfg, k, None) in (None, 1.0)
        for k in ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling")
    )


@functools.cache
def _trainer_classes() -> tuple[type, type]:
    """Build the collator and trainer subclasses (deferred so importing this module stays light)."""
    import contextlib
    from dataclasses import dataclass

    import torch
    from peft.helpers import disable_input_dtype_casting
    from trl import DPOTrainer
    from trl.models.utils import disable_gradient_checkpointing
    from trl.trainer.dpo_trainer import DataCollatorForPreference
    from trl.trainer.utils import use_adapter

    from selfmoa.losses import chosen_nll, modpo_loss

    @dataclass
    class MarginCollator(DataCollatorForPreference):
        """TRL's preference collator plus a (B,) float tensor of safety margins."""

        def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
            out = super().torch_call(examples)
            if MARGIN_COLUMN not in examples[0]:
                raise KeyError(f"batch has no {MARGIN_COLUMN!r} column; build the dataset with preference_dataset()")
            out[MARGIN_COLUMN] = torch.tensor([float(e[MARGIN_COLUMN]) for e in examples], dtype=torch.float32)
            return out

    class MultiObjectiveDPOTrainer(DPOTrainer):
        """DPOTrainer whose loss is `selfmoa.losses.modpo_loss` with the dataset's per-pair safety margin.

        Log-probabilities: on CUDA, TRL's fused LM head (Triton, scores completion tokens only); elsewhere
        `completion_logps` (TRL's fused head falls back to scoring every position with many float32
        passes over (tokens, vocab) tiles, which dominated the step time on CPUs).
        """

        def __init__(
            self,
            *args: Any,
            w_safety: float,
            w_helpful: float,
            sft_weight: float = 0.0,
            bucket_seed: int = 0,
            compact_head: bool | None = None,
            **kwargs: Any,
        ) -> None:
            self.w_safety = w_safety
            self.w_helpful = w_helpful
            self.sft_weight = sft_weight
            self.bucket_seed = bucket_seed
            model = kwargs.get("model", args[0] if args else None)
            if compact_head is None:
                compact_head = not torch.cuda.is_available() and _plain_lm_head(model)
            self.compact_head = compact_head
            super().__init__(*args, **kwargs)

        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            dataset = super()._prepare_dataset(dataset, processing_class, args, dataset_name)

            def add_length(ex: dict[str, Any]) -> dict[str, int]:
                n = len(ex["prompt_ids"]) + max(len(ex["chosen_ids"]), len(ex["rejected_ids"]))
                return {LENGTH_COLUMN: min(n, args.max_length or n)}

            # sorted, so that the one-off reference pass also runs on batches of similar length
            return dataset.map(add_length).sort(LENGTH_COLUMN)

        def _set_signature_columns_if_needed(self) -> None:
            super()._set_signature_columns_if_needed()
            for col in (MARGIN_COLUMN, LENGTH_COLUMN):
                if col not in self._signature_columns:
                    self._signature_columns.append(col)

        def _get_train_sampler(self, train_dataset: Any = None) -> Any:
            dataset = self.train_dataset if train_dataset is None else train_dataset
            return LengthBucketSampler(dataset[LENGTH_COLUMN], self.args.per_device_train_batch_size, self.bucket_seed)

        def _token_logps(self, model: Any, inputs: dict[str, Any]) -> tuple[Any, Any]:
            """(2B, T-1) per-token log-probs of [chosen; rejected] completions and the matching mask."""
            shift_mask = inputs["completion_mask"][:, 1:]
            if not self.compact_head:
                labels = inputs["input_ids"].masked_fill(inputs["completion_mask"] == 0, -100)
                out = model(
                    input_ids=inputs["input_ids"],
                    attention_mask=inputs["attention_mask"],
                    labels=labels,
                    fused_lm_head=True,
                    use_cache=False,
                )
                return out.log_probs[:, -shift_mask.size(1) :], shift_mask
            unwrapped = self.accelerator.unwrap_model(model)
            causal_lm = unwrapped.get_base_model() if hasattr(unwrapped, "get_base_model") else unwrapped
            # The backbone is called directly (not through accelerate's wrapped forward), so autocast is entered
            # here. Under autocast, PEFT's cast of each LoRA input to the float32 adapter dtype is a wasted copy.
            with self.accelerator.autocast():
                autocast_on = torch.is_autocast_enabled(inputs["input_ids"].device.type)
                with disable_input_dtype_casting(unwrapped, active=autocast_on):
                    logps = grouped_token_logps(
                        causal_lm, inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"]
                    )
            return logps, shift_mask

        def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> tuple[Any, Any]:
            adapter = contextlib.nullcontext()
            if self.ref_model is None and hasattr(self.model, "peft_config"):
                unwrapped = self.accelerator.unwrap_model(self.model)
                adapter = use_adapter(unwrapped, adapter_name="ref" if "ref" in unwrapped.peft_config else None)
            with (
                torch.no_grad(),
                disable_gradient_checkpointing(self.model, self.args.gradient_checkpointing_kwargs),
                adapter,
                self.accelerator.autocast(),
            ):
                token_logps, _ = self._token_logps(model, inputs)
            return token_logps.sum(dim=1).chunk(2, dim=0)

        def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False) -> Any:
            if return_outputs:
                raise NotImplementedError("MultiObjectiveDPOTrainer does not return model outputs")
            mode = "train" if self.model.training else "eval"
            token_logps, shift_mask = self._token_logps(model, inputs)
            chosen_logps, rejected_logps = token_logps.sum(dim=1).float().chunk(2, dim=0)
            if "ref_chosen_logps" in inputs:
                ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
            else:
                ref_chosen, ref_rejected = self.compute_ref_log_probs(self.ref_model or model, inputs)
            device = chosen_logps.device
            losses, chosen_rewards, rejected_rewards = modpo_loss(
                chosen_logps,
                rejected_logps,
                ref_chosen.float().to(device),
                ref_rejected.float().to(device),
                inputs[MARGIN_COLUMN].to(device),
                beta=self.beta,
                w_safety=self.w_safety,
                w_helpful=self.w_helpful,
            )
            loss = losses.mean()
            metrics = self._metrics[mode]
            metrics["loss/modpo"].append(loss.item())
            if self.sft_weight:
                chosen_mask, _ = shift_mask.chunk(2, dim=0)
                chosen_tokens, _ = token_logps.chunk(2, dim=0)
                sft = chosen_nll(chosen_tokens.float(), chosen_mask)
                loss = loss + self.sft_weight * sft
                metrics["loss/sft"].append(sft.item())
            metrics["rewards/chosen"].append(chosen_rewards.mean().item())
            metrics["rewards/rejected"].append(rejected_rewards.mean().item())
            metrics["rewards/margins"].append((chosen_rewards - rejected_rewards).mean().item())
            metrics["rewards/accuracies"].append((chosen_rewards > rejected_rewards).float().mean().item())
            metrics["logps/chosen"].append(chosen_logps.mean().item())
            metrics["logps/rejected"].append(rejected_logps.mean().item())
            metrics["safety_margin"].append(inputs[MARGIN_COLUMN].mean().item())
            return loss

    return MarginCollator, MultiObjectiveDPOTrainer


def _is_4bit(model: Any) -> bool:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return bool(getattr(base, "is_loaded_in_4bit", False))


def _prepare_policy(model: Any, cfg: TrainConfig) -> tuple[Any, Any]:
    """Return (model, peft_config): a fresh LoRA config for a plain model, None to keep training an adapter."""
    from peft import LoraConfig, PeftModel, prepare_model_for_kbit_training

    if _is_4bit(model):
        _unpack_cpu_4bit(model)
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
    peft_config = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return model, peft_config


def _unpack_cpu_4bit(model: Any) -> None:
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
def _no_cpu_repacking(model: Any) -> Iterator[None]:
    """Keep bitsandbytes from repacking NF4 weights for inference (see `_unpack_cpu_4bit`) while training."""
    modules = [m for m in model.modules() if hasattr(m, "support_avx512bf16_for_cpu")]
    saved = [m.support_avx512bf16_for_cpu for m in modules]
    for m in modules:
        m.support_avx512bf16_for_cpu = False
    try:
        yield
    finally:
        for m, value in zip(modules, saved, strict=True):
            m.support_avx512bf16_for_cpu = value


def _restore_lora_dropout(model: Any) -> None:
    """TRL sets every dropout to 0 (policy and reference must agree); LoRA dropout is re-enabled as configured."""
    p = float(model.peft_config["default"].lora_dropout)
    for name, module in model.named_modules():
        if name.endswith("lora_dropout.default") and hasattr(module, "p"):
            module.p = p


def dpo_args(cfg: TrainConfig, output_dir: str | Path, seed: int, n_pairs: int, **overrides: Any) -> Any:
    """The `trl.DPOConfig` of the fast path (see the module docstring); `overrides` replace any field."""
    import torch
    from trl import DPOConfig

    if cfg.bf16 and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise ValueError("train.bf16 is true but this GPU has no bf16 support; set train.bf16: false")
    kwargs: dict[str, Any] = {
        "output_dir": str(output_dir),
        "beta": cfg.beta,
        "learning_rate": cfg.learning_rate,
        "num_train_epochs": cfg.epochs,
        "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": 1,
        "max_length": cfg.max_length,
        "precompute_ref_log_probs": True,
        "precompute_ref_batch_size": max(cfg.batch_size, min(2 * cfg.batch_size, n_pairs)),
        "activation_checkpointing": cfg.gradient_checkpointing,
        "use_cpu": not torch.cuda.is_available(),
        "bf16": cfg.bf16,
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
    collator_cls, trainer_cls = _trainer_classes()
    output_dir = Path(output_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dataset = preference_dataset(pairs)
    model, peft_config = _prepare_policy(model, cfg)
    t0 = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="selfmoa-dpo-") as scratch,
        _quiet(),
        _no_cpu_repacking(model),
        _eager_attention_on_cpu(model),
    ):
        try:
            trainer = trainer_cls(
                model=model,
                args=dpo_args(cfg, scratch, seed, len(dataset)),
                train_dataset=dataset,
                processing_class=tokenizer,
                peft_config=peft_config,
                w_safety=cfg.w_safety,
                w_helpful=cfg.w_helpful,
                sft_weight=cfg.sft_weight,
                bucket_seed=seed,
                data_collator=collator_cls(pad_token_id=tokenizer.pad_token_id, max_length=cfg.max_length),
            )
            t_ref = time.perf_counter() - t0
            _restore_lora_dropout(trainer.model)
            result = trainer.train()
        finally:
            _unpatch_fused_head(model)
    seconds = time.perf_counter() - t0
    # drop the autocast / fp32-output wrapper accelerate puts on forward for mixed precision
    policy = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    _unpatch_fused_head(policy)
    if "ref" in policy.peft_config:
        policy.delete_adapter("ref")
    policy.set_adapter("default")
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


def _unpatch_fused_head(model: Any) -> None:
    """Remove the fused-LM-head forward TRL patches onto the model instance (generation never needs it)."""
    base = model
    while hasattr(base, "get_base_model"):
        nxt = base.get_base_model()
        if nxt is base:
            break
        base = nxt
    base.__dict__.pop("forward", None)
