"""Optional vLLM engine for the policy's responses (`policy.backend: vllm`; CUDA only, `pip install vllm`).

The transformers path (`selfmoa.generation.generate`) is the reference; this module gives the same
`list[list[str]]` answer for the same arguments:

- prompts are the project's own chat texts (`selfmoa.generation.chat_texts`), tokenized without extra
  special tokens exactly as the transformers path does, and handed to vLLM as token ids;
- greedy decoding (temperature 0) computes one sample and repeats it; sampling gives every prompt its own
  seed, derived from the call's seed and the prompt, so an answer does not depend on what else is asked
  or cached;
- answers go through the same sqlite `GenerationCache`, keyed by the engine, checkpoint, merged adapters
  and sampling settings (vLLM samples differ from transformers samples, so the two never share entries).

vLLM loads weights from a folder or hub id, so the policy of iteration t (base + merged LoRA adapters)
comes from the checkpoint that `selfmoa.policy` saves once under `<run>/merged/iter<t>/`. `load_policy`
attaches a `VllmPolicy` to the model it returns, and `selfmoa.policy.Responder` sends generation here when it
finds one. Everything up to the engine call is a pure function (unit-tested without vLLM); the engine is
built lazily, once per checkpoint, on the first call.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from selfmoa.generation import GenerationCache, SamplingSettings, cache_key, chat_texts
from selfmoa.models import ModelLoadError
from selfmoa.seeding import derive_seed

log = logging.getLogger(__name__)

FIX = "or set policy.backend=transformers (e.g. `selfmoa run ... --set policy.backend=transformers`)"


class VllmUnavailableError(ModelLoadError):
    """`policy.backend` is 'vllm' but vLLM cannot run here; the message names the package and the fix."""


def unavailable_reason(has_vllm: bool, has_cuda: bool) -> str | None:
    """Why the vLLM backend cannot be used (None when it can): the package and a CUDA GPU are required."""
    if not has_vllm:
        return f"policy.backend is 'vllm' but the package 'vllm' is not installed: `pip install vllm` on a CUDA machine, {FIX}"
    if not has_cuda:
        return f"policy.backend is 'vllm' but no CUDA GPU is visible (this backend needs one): run on a CUDA machine, {FIX}"
    return None


def check_available(has_vllm: bool | None = None, has_cuda: bool | None = None) -> None:
    """Raise `VllmUnavailableError` (a one-line message, no traceback chain) when vLLM cannot run here."""
    if has_vllm is None:
        has_vllm = importlib.util.find_spec("vllm") is not None
    if has_cuda is None:
        import torch

        has_cuda = torch.cuda.is_available()
    reason = unavailable_reason(has_vllm, has_cuda)
    if reason:
        raise VllmUnavailableError(reason)


@dataclass
class VllmPolicy:
    """What vLLM needs to serve the policy: a checkpoint folder or hub id and how to load it."""

    source: str
    dtype: str = "bfloat16"
    load_in_4bit: bool = False
    revision: str | None = None
    gpu_memory: float = 0.5
    adapter_ids: list[str] = field(default_factory=list)

    @classmethod
    def from_spec(cls, spec: Any, source: str, adapter_ids: Sequence[str] = ()) -> VllmPolicy:
        """From a `config.PolicySpec` and the folder (or hub id) its weights load from."""
        return cls(
            source=str(source),
            dtype=spec.dtype,
            load_in_4bit=spec.load_in_4bit,
            revision=spec.revision if str(source) == spec.name else None,
            gpu_memory=spec.vllm_gpu_memory,
            adapter_ids=list(adapter_ids),
        )

    def fingerprint(self) -> str:
        """Identity for generation cache keys (engine, weights, precision, merged adapters)."""
        quant = "nf4" if self.load_in_4bit else ""
        return "|".join(["vllm", self.source, self.revision or "", self.dtype, quant, *self.adapter_ids])


def engine_kwargs(policy: VllmPolicy) -> dict[str, Any]:
    """Arguments of `vllm.LLM`; 4-bit policies are quantized in flight with bitsandbytes (NF4), like transformers."""
    kwargs: dict[str, Any] = {
        "model": policy.source,
        "tokenizer": policy.source,
        "dtype": policy.dtype,
        "gpu_memory_utilization": policy.gpu_memory,
        "seed": 0,
    }
    if policy.revision:
        kwargs["revision"] = policy.revision
    if policy.load_in_4bit:
        kwargs["quantization"] = "bitsandbytes"
    return kwargs


def sampling_kwargs(settings: SamplingSettings, n: int, seed: int | None) -> dict[str, Any]:
    """Arguments of `vllm.SamplingParams` for one prompt (greedy: one sample, no seed, full nucleus)."""
    greedy = settings.temperature == 0.0
    return {
        "n": 1 if greedy else n,
        "temperature": settings.temperature,
        "top_p": 1.0 if greedy else settings.top_p,
        "max_tokens": settings.max_new_tokens,
        "repetition_penalty": settings.repetition_penalty,
        "seed": None if greedy else seed,
    }


def request_seed(seed: int, system: str | None, prompt: str) -> int:
    """Seed of one prompt's samples: a function of the call's seed and the prompt only."""
    return derive_seed(seed, "vllm:" + json.dumps([system, prompt]))


def prompt_inputs(tokenizer: Any, prompts: Sequence[str], system: str | None = None) -> list[dict[str, list[int]]]:
    """vLLM token prompts: the project's chat texts, tokenized without extra special tokens (as in `generate`)."""
    texts = chat_texts(tokenizer, list(prompts), system)
    return [{"prompt_token_ids": list(tokenizer(t, add_special_tokens=False)["input_ids"])} for t in texts]


def unpack(outputs: Sequence[Any], n: int) -> list[list[str]]:
    """`n` stripped texts per `vllm.RequestOutput`, in sample-index order."""
    result = []
    for i, out in enumerate(outputs):
        texts = [c.text.strip() for c in sorted(out.outputs, key=lambda c: c.index)]
        if len(texts) != n:
            raise RuntimeError(f"vLLM returned {len(texts)} samples for prompt {i}; expected {n}")
        result.append(texts)
    return result


_ENGINE: dict[str, Any] = {}  # one engine per process: {"key": engine_kwargs as JSON, "llm": vllm.LLM}


def engine(policy: VllmPolicy) -> Any:
    """The `vllm.LLM` of a policy, built on first use; a different checkpoint replaces the previous engine."""
    kwargs = engine_kwargs(policy)
    key = json.dumps(kwargs, sort_keys=True)
    if _ENGINE.get("key") == key:
        return _ENGINE["llm"]
    release()
    check_available()
    from vllm import LLM

    log.info("starting vLLM for %s", policy.source)
    _ENGINE.update(key=key, llm=LLM(**kwargs))
    return _ENGINE["llm"]


def release() -> None:
    """Drop the cached engine and return its GPU memory (best effort)."""
    llm = _ENGINE.pop("llm", None)
    _ENGINE.pop("key", None)
    if llm is None:
        return
    del llm
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def generate_vllm(
    policy: VllmPolicy,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    num_return_sequences: int = 1,
    seed: int = 0,
    system: str | None = None,
    cache: GenerationCache | None = None,
    progress: bool = True,
    llm: Any = None,
    params_factory: Callable[..., Any] | None = None,
) -> list[list[str]]:
    """`num_return_sequences` responses per user prompt from vLLM, in the order of `prompts`.

    Args:
        policy: the checkpoint to serve (see `selfmoa.policy.load_policy`).
        tokenizer: the policy's tokenizer (chat template); the same one the transformers path uses.
        prompts, max_new_tokens, temperature, top_p, repetition_penalty, num_return_sequences, seed, system,
            cache: as in `selfmoa.generation.generate`.
        llm: the engine (default: `engine(policy)`, built on first use); anything with vLLM's
            `generate(prompts, sampling_params=..., use_tqdm=...)`.
        params_factory: builds one prompt's sampling parameters from `sampling_kwargs` (default
            `vllm.SamplingParams`).
    """
    if num_return_sequences < 1:
        raise ValueError("num_return_sequences must be >= 1")
    prompts = list(prompts)
    settings = SamplingSettings(max_new_tokens, float(temperature), float(top_p), float(repetition_penalty), seed)
    n = num_return_sequences if temperature > 0 else 1
    model_id = policy.fingerprint()
    keys = [[cache_key(model_id, system, p, settings, j) for j in range(n)] for p in prompts]
    hit = cache.get_many([k for ks in keys for k in ks]) if cache is not None else {}
    results: list[list[str] | None] = [[hit[k] for k in ks] if all(k in hit for k in ks) else None for ks in keys]
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
        if llm is None:
            llm = engine(policy)
        if params_factory is None:
            from vllm import SamplingParams as params_factory
        params = [params_factory(**sampling_kwargs(settings, n, request_seed(seed, system, prompts[i]))) for i in todo]
        inputs = prompt_inputs(tokenizer, [prompts[i] for i in todo], system)
        outs = unpack(llm.generate(inputs, sampling_params=params, use_tqdm=progress), n)
        if len(outs) != len(todo):
            raise RuntimeError(f"vLLM answered {len(outs)} of {len(todo)} prompts")
        fresh: dict[str, str] = {}
        for i, texts in zip(todo, outs, strict=True):
            results[i] = texts
            fresh.update(zip(keys[i], texts, strict=True))
        if cache is not None:
            cache.put_many(fresh)
    return [(r or []) * (num_return_sequences // n) for r in results]
