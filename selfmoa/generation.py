"""Batched, left-padded, chat-templated generation with an on-disk cache.

Prompts are sorted by length so each batch pads little, generated in batches with a progress bar,
and returned in the caller's order. A cache (sqlite) keyed by everything that changes an output
(model fingerprint, system prompt, user prompt, sampling settings, seed, sample index) makes reruns free.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from selfmoa.fast_decode import FAST_DECODERS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SamplingSettings:
    """Everything about decoding that changes outputs."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    seed: int = 0


class GenerationCache:
    """A small sqlite key -> text store, safe to share across processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        with self._connect() as con:
            con.execute("CREATE TABLE IF NOT EXISTS gen (key TEXT PRIMARY KEY, text TEXT NOT NULL)")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    def get_many(self, keys: list[str]) -> dict[str, str]:
        """Cached texts for the keys that are present."""
        found: dict[str, str] = {}
        with self._lock, self._connect() as con:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                found.update(con.execute(f"SELECT key, text FROM gen WHERE key IN ({marks})", chunk).fetchall())
        return found

    def put_many(self, items: dict[str, str]) -> None:
        """Store texts (overwriting)."""
        with self._lock, self._connect() as con:
            con.executemany("INSERT OR REPLACE INTO gen (key, text) VALUES (?, ?)", list(items.items()))


def generation_cache(cfg: Any) -> GenerationCache:
    """The run-independent generation cache of a config, `<cache_dir>/generations.sqlite` (keys include the
    model, so runs never mix)."""
    return GenerationCache(Path(cfg.cache_dir) / "generations.sqlite")


def batch_context(texts: list[str], batch: list[int], index: int) -> str:
    """Digest of one generation batch (its position and every chat text in it, in order)."""
    return hashlib.sha256(json.dumps([index, [texts[i] for i in batch]]).encode()).hexdigest()


def cache_key(
    model_id: str, system: str | None, prompt: str, settings: SamplingSettings, index: int, context: str = ""
) -> str:
    """Key of one generated sample; greedy decoding ignores the seed and sample index. `context` names the batch
    it was generated in (`batch_context`), so a cached sample is reused only inside the same batch."""
    fields = asdict(settings)
    if settings.temperature == 0.0:
        fields.pop("seed")
        fields.pop("top_p")
        index = 0
    blob = json.dumps([model_id, system, prompt, fields, index, context], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def model_fingerprint(model: Any) -> str:
    """Identity of a model for cache keys: its source path plus any LoRA adapter folders and dtype."""
    parts = [str(getattr(model.config, "_name_or_path", "")), str(getattr(model, "dtype", ""))]
    for name, cfg in (getattr(model, "peft_config", None) or {}).items():
        parts.append(f"{name}:{getattr(cfg, 'revision', '')}")
    parts.extend(sorted(getattr(model, "selfmoa_adapter_ids", [])))
    if getattr(model, "is_loaded_in_4bit", False):  # same folder and compute dtype as the full-precision model
        parts.append("nf4")
    return "|".join(parts)


def chat_texts(tokenizer: Any, prompts: list[str], system: str | None = None) -> list[str]:
    """Apply the tokenizer's chat template (with an optional system message) to user prompts."""
    out = []
    for p in prompts:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": p}]
        out.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    return out


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length (longest first), covering every index once."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def _generate_batch(
    model: Any, tokenizer: Any, texts: list[str], settings: SamplingSettings, n: int, seed: int, decoder: str
) -> list[list[str]]:
    import torch

    if decoder in FAST_DECODERS:
        from selfmoa.fast_decode import generate_batch

        return generate_batch(
            model,
            tokenizer,
            texts,
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            n=n,
            seed=seed,
            compact=decoder == "compact",
        )
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    sample = settings.temperature > 0
    kwargs: dict[str, Any] = {
        "max_new_tokens": settings.max_new_tokens,
        "do_sample": sample,
        "num_return_sequences": n,
        "pad_token_id": tokenizer.pad_token_id,
        "repetition_penalty": settings.repetition_penalty,
    }
    if sample:
        kwargs.update(temperature=settings.temperature, top_p=settings.top_p, top_k=0)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(**enc, **kwargs)
    new = out[:, enc["input_ids"].shape[1] :]
    decoded = tokenizer.batch_decode(new, skip_special_tokens=True)
    return [[d.strip() for d in decoded[i * n : (i + 1) * n]] for i in range(len(texts))]


def generate(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    num_return_sequences: int = 1,
    seed: int = 0,
    batch_size: int = 16,
    system: str | None = None,
    cache: GenerationCache | None = None,
    progress: bool = True,
    desc: str = "generate",
    decoder: str = "reference",
) -> list[list[str]]:
    """Generate `num_return_sequences` responses per user prompt.

    Args:
        model, tokenizer: a causal LM and its tokenizer (left padding is enforced here).
        prompts: user messages; the chat template (and `system`, if given) is applied inside.
        temperature: 0 = greedy (then only one distinct sample is computed and repeated).
        seed: base seed; each batch is seeded from it, so results do not depend on the cache state.
        cache: optional on-disk cache; keys cover model, system, prompt, settings, seed, sample index and batch.
        decoder: 'fast' or 'compact' (`selfmoa.fast_decode`; models or settings it does not handle use the
            reference) or 'reference' (`model.generate`); keys of fast and compact outputs name the decoder.

    Returns:
        One list of `num_return_sequences` strings per prompt, in the order of `prompts`.
    """
    from tqdm.auto import tqdm

    from selfmoa.fast_decode import check_decoder, unsupported_reason
    from selfmoa.seeding import derive_seed

    if num_return_sequences < 1:
        raise ValueError("num_return_sequences must be >= 1")
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    settings = SamplingSettings(max_new_tokens, float(temperature), float(top_p), float(repetition_penalty), seed)
    n = num_return_sequences if temperature > 0 else 1
    if check_decoder(decoder) in FAST_DECODERS and (reason := unsupported_reason(model, settings.repetition_penalty)):
        log.debug("reference decoder for this call: %s", reason)
        decoder = "reference"
    # Batches are formed over every prompt and a batch is reused only when all of it is cached under keys that
    # name the whole batch: what a prompt gets (sampled or greedy, whose padding differs with its neighbours)
    # then depends on the call alone, never on what an earlier call left in the cache.
    texts = chat_texts(tokenizer, prompts, system)
    lengths = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    batches = length_sorted_batches(lengths, batch_size)
    mid = model_fingerprint(model) + ("" if decoder == "reference" else f"|decoder:{decoder}")
    results: list[list[str]] = [[] for _ in prompts]
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress, leave=False)
    for b, batch in enumerate(batches):
        context = batch_context(texts, batch, b)
        keys = {i: [cache_key(mid, system, prompts[i], settings, j, context) for j in range(n)] for i in batch}
        hit = cache.get_many([k for ks in keys.values() for k in ks]) if cache is not None else {}
        if all(k in hit for ks in keys.values() for k in ks):
            for i in batch:
                results[i] = [hit[k] for k in keys[i]]
        else:
            outs = _generate_batch(
                model, tokenizer, [texts[i] for i in batch], settings, n, derive_seed(seed, "generate", b), decoder
            )
            for i, o in zip(batch, outs, strict=True):
                results[i] = o
            if cache is not None:
                cache.put_many(
                    {k: v for i, o in zip(batch, outs, strict=True) for k, v in zip(keys[i], o, strict=True)}
                )
        bar.update(len(batch))
    bar.close()
    done = results
    if n != num_return_sequences:
        done = [r * num_return_sequences for r in done]
    return done
