"""The policy as the loop sees it: base weights plus the chain of LoRA adapters trained so far.

Iteration t starts from pi_t = base (+ safety-reset adapter) + adapters of iterations 0..t-1, each merged
in order. With full-precision weights the chain is merged in memory (about a second per adapter for
the 135M model). 4-bit weights cannot absorb an adapter, so for a 4-bit policy the chain is merged once
in `policy.dtype` on the CPU, saved under `<run>/merged/iter<t>/`, and that checkpoint is loaded in 4-bit.
With `policy.backend: vllm` the merged checkpoint is saved at any precision, since vLLM loads weights from
a folder; the returned model then carries a `vllm_backend.VllmPolicy` that `Responder` generates with.

`Responder.from_config(cfg, model, tok, purpose, seed)` is the policy answering prompts with the decoding
settings of one purpose: `answer` (greedy, `sampling.max_new_tokens`: red-team answers, self-revision, the
reset check), `sample` (stage 03: K samples at `sampling.temperature`) or `eval` (greedy, `eval.*`: stage 07).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfmoa.artifacts import file_hash
from selfmoa.config import RunConfig
from selfmoa.generation import GenerationCache, generate, generation_cache
from selfmoa.models import load_adapter, load_model, merge_adapter, resolve, resolve_dtype
from selfmoa.paths import stage_dir
from selfmoa.vllm_backend import VllmPolicy, generate_vllm
from selfmoa.vllm_backend import check_available as check_vllm

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"


def adapter_chain(run: Path, iteration: int) -> list[Path]:
    """Adapters that make up the policy at the start of `iteration` (reset first, then 06_align of 0..t-1)."""
    chain = []
    reset = stage_dir(run, "01_safety_reset") / ADAPTER_DIR
    if (reset / "adapter_config.json").is_file():
        chain.append(reset)
    for t in range(iteration):
        path = stage_dir(run, "06_align", t) / ADAPTER_DIR
        if not (path / "adapter_config.json").is_file():
            raise FileNotFoundError(f"{path}: iteration {t} has no trained adapter; run stage 06_align@{t} first")
        chain.append(path)
    return chain


def _merged(cfg: RunConfig, chain: list[Path]) -> tuple[Any, Any]:
    """Base weights in `policy.dtype` (never 4-bit) with every adapter of the chain merged in order."""
    spec = dataclasses.replace(cfg.policy, load_in_4bit=False)
    model, tok = load_model(spec, cfg.cache_dir)
    for path in chain:
        model = merge_adapter(load_adapter(model, path))
    # merging drops the adapter from the model object; keep its identity for generation cache keys
    model.selfmoa_adapter_ids = adapter_ids(chain)
    return model, tok


def adapter_ids(chain: list[Path]) -> list[str]:
    """Identity of each merged adapter (folder + content hash), in merge order, for generation cache keys."""
    return [f"{i}:{path}#{file_hash(path)}" for i, path in enumerate(chain)]


def load_policy(
    cfg: RunConfig, run: Path, iteration: int, upto_reset_only: bool = False, extra_adapters: Sequence[Path] = ()
) -> tuple[Any, Any]:
    """(model, tokenizer) of the policy at the start of `iteration`, adapters merged.

    Args:
        cfg: the run config (policy spec and cache folder).
        run: the run folder.
        iteration: loop iteration t (0 = after the optional safety reset).
        upto_reset_only: ignore loop adapters (the 'base' model of the evaluation, after any reset).
        extra_adapters: adapters merged after the chain (a study variant trained from the policy at `iteration`).
    """
    chain = adapter_chain(run, 0 if upto_reset_only else iteration) + [Path(p) for p in extra_adapters]
    vllm = cfg.policy.backend == "vllm"
    if vllm:
        check_vllm()  # a clear error before any weights load
    if not chain:
        model, tok = load_model(cfg.policy, cfg.cache_dir)
        return (_with_backend(cfg, model, resolve(cfg.policy, cfg.cache_dir), []) if vllm else model), tok
    if not cfg.policy.load_in_4bit and not vllm:
        model, tok = _merged(cfg, chain)
        model.eval()
        return model, tok
    name = f"iter{0 if upto_reset_only else iteration}" + "".join(f"+{Path(p).parent.name}" for p in extra_adapters)
    target = merged_checkpoint(cfg, run / "merged" / name, chain)
    spec = dataclasses.replace(cfg.policy, name=str(target))
    model, tok = load_model(spec, cfg.cache_dir)
    model.selfmoa_adapter_ids = adapter_ids(chain)
    return _with_backend(cfg, model, str(target), model.selfmoa_adapter_ids), tok


def merged_checkpoint(cfg: RunConfig, target: Path, chain: list[Path]) -> Path:
    """Save base + chain merged in `policy.dtype` once under `target` (what 4-bit policies and vLLM load).

    `target/MERGE_KEY`, written last, records the base model and the identity of every adapter of the chain
    (content hashes): a checkpoint merged from other adapters (a `--force` rerun after retraining) or cut
    short by a kill is merged afresh, never loaded.
    """
    import json
    import shutil

    from selfmoa.artifacts import atomic_write_bytes

    spec = cfg.policy
    dtype = resolve_dtype(spec.dtype, spec.device)  # the precision merged in
    key = json.dumps({"base": [spec.name, spec.revision, dtype], "adapters": adapter_ids(chain)}, sort_keys=True)
    marker = target / MERGE_KEY
    if marker.is_file() and marker.read_text() == key and (target / "config.json").is_file():
        return target
    if target.exists():
        shutil.rmtree(target)
    model, tok = _merged(cfg, chain)
    model.save_pretrained(target)
    tok.save_pretrained(target)
    del model
    atomic_write_bytes(marker, key.encode())
    return target


MERGE_KEY = "selfmoa_merge_key.json"


def _with_backend(cfg: RunConfig, model: Any, source: str, ids: list[str]) -> Any:
    """Attach the vLLM view of the policy (`policy.backend: vllm`), which `Responder` generates with."""
    if cfg.policy.backend == "vllm":
        model.selfmoa_vllm = VllmPolicy.from_spec(cfg.policy, source, ids)
    return model


PURPOSES = ("answer", "sample", "eval")


@dataclass(frozen=True, eq=False)
class Responder:
    """A model answering prompts with fixed decoding settings (vLLM when the policy carries one).

    Build it with `from_config`, which reads the settings of one purpose from the config, so a stage
    never passes lengths, batch sizes or temperatures by hand.
    """

    model: Any
    tokenizer: Any
    max_new_tokens: int
    batch_size: int
    seed: int
    cache: GenerationCache | None = None
    temperature: float = 0.0
    top_p: float = 1.0
    k: int = 1
    desc: str = "respond"
    decoder: str = "reference"

    @classmethod
    def from_config(
        cls, cfg: RunConfig, model: Any, tokenizer: Any, purpose: str, seed: int, cache: bool = True
    ) -> Responder:
        """The responder of one purpose.

        Args:
            cfg: the run config.
            model, tokenizer: the model (e.g. from `load_policy`).
            purpose: 'answer' (one greedy answer, `sampling.max_new_tokens` and `sampling.batch_size`),
                'sample' (`sampling.k` answers at `sampling.temperature` and `sampling.top_p`) or 'eval'
                (one greedy answer, `eval.max_new_tokens` and `eval.batch_size`).
            seed: generation seed (the stage seed).
            cache: use the run-independent generation cache under `cache_dir` (off for a model in training).
        """
        store = generation_cache(cfg) if cache else None
        s = cfg.sampling
        if purpose == "answer":
            return cls(model, tokenizer, s.max_new_tokens, s.batch_size, seed, store, decoder=s.decoder)
        if purpose == "sample":
            return cls(
                model,
                tokenizer,
                s.max_new_tokens,
                s.batch_size,
                seed,
                store,
                s.temperature,
                s.top_p,
                s.k,
                "sample",
                s.decoder,
            )
        if purpose == "eval":
            return cls(
                model,
                tokenizer,
                cfg.eval.max_new_tokens,
                cfg.eval.batch_size,
                seed,
                store,
                desc="evaluate",
                decoder=s.decoder,
            )
        raise ValueError(f"unknown responder purpose {purpose!r}; use one of {list(PURPOSES)}")

    def respond(self, prompts: Sequence[str]) -> list[list[str]]:
        """`k` answers per prompt, in the order of `prompts`."""
        vllm = getattr(self.model, "selfmoa_vllm", None)  # set by load_policy for policy.backend: vllm
        if isinstance(vllm, VllmPolicy):
            return generate_vllm(
                vllm,
                self.tokenizer,
                list(prompts),
                max_new_tokens=self.max_new_tokens,
                temperature=self.temperature,
                top_p=self.top_p,
                seed=self.seed,
                num_return_sequences=self.k,
                cache=self.cache,
            )
        return generate(
            self.model,
            self.tokenizer,
            list(prompts),
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            num_return_sequences=self.k,
            seed=self.seed,
            batch_size=self.batch_size,
            cache=self.cache,
            desc=self.desc,
            decoder=self.decoder,
        )

    def __call__(self, prompts: list[str]) -> list[str]:
        """The first answer to each prompt (a `prompts -> responses` callable for red-team and self-revision)."""
        return [o[0] for o in self.respond(prompts)]
