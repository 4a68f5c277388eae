"""The multi-objective DPO trainer and its collator: the only module that touches TRL internals.

What TRL 1.16 lacks and this module adds: a per-pair safety margin in the DPO loss (`selfmoa.losses`).
`MultiObjectiveDPOTrainer` subclasses `trl.DPOTrainer`:

- the ``safety_margin`` column survives the pipeline: it is added to the trainer's signature columns (so
  `remove_unused_columns` keeps it) and `MarginCollator` turns it into a (B,) tensor;
- `_compute_loss` is replaced: one forward pass over [chosen; rejected], per-token log-probabilities of
  the completion tokens summed per sequence, then `modpo_loss` (plus an optional SFT term on the chosen
  answers, `chosen_nll`). On CUDA the log-probabilities come from TRL's fused LM head (Triton); on CPUs
  from `selfmoa.cpu_kernels`, which sends only completion positions through the LM head;
- the one-off reference pass (`precompute_ref_log_probs`) keeps its results in memory as two columns
  (`_precompute_ref_logps`): TRL writes them to a cache file named by `datasets`' private
  `Dataset._get_cache_file_path`, which for an in-memory dataset is a random file per process. Every
  process already holds all values (they are gathered across processes), so no file is needed, on one
  GPU or several;
- batches of similar length (`LengthBucketSampler`), LoRA dropout as configured (TRL sets every dropout to
  0), and `trained_policy` to hand back the plain PEFT model after training.

This module imports TRL when it is imported (its classes subclass TRL's); `selfmoa.training` imports it
only when it trains.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from peft.helpers import disable_input_dtype_casting
from trl import DPOTrainer
from trl.models.utils import disable_gradient_checkpointing
from trl.trainer.dpo_trainer import DataCollatorForPreference
from trl.trainer.utils import use_adapter

from selfmoa.cpu_kernels import grouped_token_logps, plain_lm_head
from selfmoa.losses import chosen_nll, modpo_loss

MARGIN_COLUMN = "safety_margin"
LENGTH_COLUMN = "length"
REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
REQUIRED_PAIR_KEYS = ("prompt", "chosen", "rejected", MARGIN_COLUMN)


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


@dataclass
class MarginCollator(DataCollatorForPreference):
    """TRL's preference collator plus a (B,) float tensor of safety margins."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        """Collate a batch; the margins come along as ``batch['safety_margin']``."""
        out = super().torch_call(examples)
        if MARGIN_COLUMN not in examples[0]:
            raise KeyError(f"batch has no {MARGIN_COLUMN!r} column; build the dataset with preference_dataset()")
        out[MARGIN_COLUMN] = torch.tensor([float(e[MARGIN_COLUMN]) for e in examples], dtype=torch.float32)
        return out


def restore_lora_dropout(model: Any) -> None:
    """TRL sets every dropout to 0 (policy and reference must agree); LoRA dropout is re-enabled as configured."""
    if "default" not in getattr(model, "peft_config", {}):
        return
    p = float(model.peft_config["default"].lora_dropout)
    for name, module in model.named_modules():
        if name.endswith("lora_dropout.default") and hasattr(module, "p"):
            module.p = p


def unpatch_fused_head(model: Any) -> None:
    """Remove the fused-LM-head forward TRL patches onto the model instance (generation never needs it)."""
    base = model
    while hasattr(base, "get_base_model"):
        nxt = base.get_base_model()
        if nxt is base:
            break
        base = nxt
    base.__dict__.pop("forward", None)


class MultiObjectiveDPOTrainer(DPOTrainer):
    """DPOTrainer whose loss is `selfmoa.losses.modpo_loss` with the dataset's per-pair safety margin.

    Log-probabilities: on CUDA, TRL's fused LM head (Triton, scores completion tokens only); elsewhere
    `selfmoa.cpu_kernels.grouped_token_logps` (TRL's fused head falls back to scoring every position with
    many float32 passes over (tokens, vocab) tiles, which dominated the step time on CPUs).

    Args (besides `trl.DPOTrainer`'s):
        w_safety, w_helpful: loss weights (`modpo_loss`).
        sft_weight: weight of the SFT term on chosen answers (0 = off).
        bucket_seed: seed of the length-bucketed batch order.
        compact_head: use the CPU kernels (None = on CPUs when the model's LM head is plain).
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
            compact_head = not torch.cuda.is_available() and plain_lm_head(model)
        self.compact_head = compact_head
        super().__init__(*args, **kwargs)
        restore_lora_dropout(self.model)

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
        # buckets of one optimisation step, so micro-batches (train.micro_batch_size) split a step's pairs, not mix steps
        step = self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps
        return LengthBucketSampler(dataset[LENGTH_COLUMN], step, self.bucket_seed)

    def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
        """Reference log-probabilities of every pair, added as float32 columns in memory (see module doc).

        Same batches, order and values as TRL's own pass; the gathered values exist on every process, so
        each adds them to its own copy of the dataset with the public `Dataset.add_column`.
        """
        from torch.utils.data import DataLoader

        if self.is_deepspeed_enabled:
            raise NotImplementedError("selfmoa's reference pass does not support DeepSpeed; use DDP (accelerate)")
        loader = DataLoader(
            dataset,
            batch_size=batch_size,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            shuffle=False,
        )
        model = self.ref_model or self.model
        chosen, rejected = [], []
        for batch in self.accelerator.prepare(loader):
            c, r = self.accelerator.gather_for_metrics(self.compute_ref_log_probs(model, batch))
            chosen.append(c.cpu())
            rejected.append(r.cpu())
        for column, values in zip(REF_COLUMNS, (chosen, rejected), strict=True):
            dataset = dataset.add_column(column, torch.cat(values).float().numpy())
        return dataset

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
        # here. Under autocast, PEFT's cast of each LoRA input to the float32 adapter dtype is a wasted copy
        # (about 40% of a forward pass).
        with self.accelerator.autocast():
            autocast_on = torch.is_autocast_enabled(inputs["input_ids"].device.type)
            with disable_input_dtype_casting(unwrapped, active=autocast_on):
                logps = grouped_token_logps(
                    causal_lm, inputs["input_ids"], inputs["attention_mask"], inputs["completion_mask"]
                )
        return logps, shift_mask

    def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> tuple[Any, Any]:
        """Summed completion log-probs (chosen, rejected) under the reference: adapter ``ref`` or none."""
        adapter: Any = contextlib.nullcontext()
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
        if REF_COLUMNS[0] in inputs:
            ref_chosen, ref_rejected = inputs[REF_COLUMNS[0]], inputs[REF_COLUMNS[1]]
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

    def trained_policy(self) -> Any:
        """The trained PEFT model with only its ``default`` adapter, free of TRL's and accelerate's wrappers."""
        # keep_fp32_wrapper=False drops the autocast / fp32-output wrapper accelerate puts on forward
        policy = self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=False)
        unpatch_fused_head(policy)
        if "ref" in policy.peft_config:
            policy.delete_adapter("ref")
        policy.set_adapter("default")
        return policy
