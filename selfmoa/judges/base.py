"""The judge protocol, the `Judgements` container, and helpers shared by the model-based judges."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

ASPECTS = ("safety", "helpfulness")


def check_aspect(aspect: str) -> str:
    """Return `aspect` or raise naming the allowed values."""
    if aspect not in ASPECTS:
        raise ValueError(f"aspect must be one of {ASPECTS}, got {aspect!r}")
    return aspect


@dataclass(frozen=True, eq=False)
class Judgements:
    """Scores of one judge for a batch of (prompt, response) pairs.

    Attributes:
        values: float64 (n,), in [0, 1] where scored and NaN where unscored. Safety: 1 = safe.
            Helpfulness: 1 = a useful answer to the request.
        unscored: bool (n,), True where the judge could not score the item (never read it as 0).
        judge_id: identity of the judge (includes the model where there is one).
        template_version: version of the rubric / phrase list / classifier, part of every cache key.
        aspect: "safety" or "helpfulness".
        members: for ensembles, the member judgements by name.
    """

    values: np.ndarray
    unscored: np.ndarray
    judge_id: str
    template_version: str
    aspect: str
    members: dict[str, Judgements] = field(default_factory=dict)

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=np.float64).reshape(-1)
        unscored = np.asarray(self.unscored, dtype=bool).reshape(-1)
        if values.shape != unscored.shape:
            raise ValueError(f"{self.judge_id}: values {values.shape} and unscored {unscored.shape} differ in length")
        check_aspect(self.aspect)
        unscored = unscored | ~np.isfinite(values)
        scored = values[~unscored]
        if scored.size and (scored.min() < 0.0 or scored.max() > 1.0):
            raise ValueError(f"{self.judge_id}: scored values must lie in [0, 1], got [{scored.min()}, {scored.max()}]")
        values = np.where(unscored, np.nan, values)
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "unscored", unscored)

    def __len__(self) -> int:
        return len(self.values)

    @property
    def unscored_fraction(self) -> float:
        """Share of items the judge could not score (0 for an empty batch)."""
        return float(self.unscored.mean()) if len(self) else 0.0

    def decisions(self, threshold: float = 0.5) -> np.ndarray:
        """float array: 1.0 where value >= threshold, 0.0 below, NaN where unscored."""
        return np.where(self.unscored, np.nan, (self.values >= threshold).astype(np.float64))

    @classmethod
    def from_optional(
        cls, values: Sequence[float | None], judge_id: str, template_version: str, aspect: str
    ) -> Judgements:
        """Build from a list where None marks an unscored item."""
        arr = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        return cls(arr, np.isnan(arr), judge_id, template_version, aspect)


@runtime_checkable
class Judge(Protocol):
    """Anything that scores (prompt, response) pairs for one aspect."""

    judge_id: str
    template_version: str
    aspect: str

    def score(self, prompts: list[str], responses: list[str]) -> Judgements:
        """Score each (prompt, response) pair; same length and order as the inputs."""
        ...


def check_inputs(prompts: Sequence[str], responses: Sequence[str]) -> tuple[list[str], list[str]]:
    """Validate a batch: equal lengths, strings (None responses become ''), returned as lists."""
    if isinstance(prompts, str) or isinstance(responses, str):
        raise TypeError("score() takes lists of prompts and responses, not single strings")
    if len(prompts) != len(responses):
        raise ValueError(
            f"score() got {len(prompts)} prompts but {len(responses)} responses; pass one response "
            "per prompt (repeat the prompt for several samples)"
        )
    out_p, out_r = [], []
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        if not isinstance(p, str):
            raise TypeError(f"prompt {i} is {type(p).__name__}, expected str")
        if r is not None and not isinstance(r, str):
            raise TypeError(f"response {i} is {type(r).__name__}, expected str")
        out_p.append(p)
        out_r.append(r or "")
    return out_p, out_r


_WORD = re.compile(r"\w+")


def is_degenerate(text: str) -> bool:
    """True for a response with no usable content: empty, no letters or digits, or one or two words looped.

    The loop rule fires when there are at least 8 words and at most 2 distinct ones
    ("the the the ...", "ok ok ok ..."); longer looping sentences are judged on their content.
    """
    words = _WORD.findall((text or "").lower())
    if not words:
        return True
    return len(words) >= 8 and len(set(words)) <= 2


# ---------------------------------------------------------------------------------------------------
# Shared helpers for judges that read next-token probabilities of a causal LM
# ---------------------------------------------------------------------------------------------------

TRUNCATION_MARK = " [truncated]"


def special_token_strings(tokenizer: Any) -> list[str]:
    """Every special / added-token string of a tokenizer (chat markers like '<|im_end|>'), longest first."""
    found = set(getattr(tokenizer, "all_special_tokens", []) or [])
    for tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        content = getattr(tok, "content", None)
        if content and getattr(tok, "special", True):
            found.add(content)
    return sorted((s for s in found if s), key=len, reverse=True)


def neutralise(text: str, special_tokens: Sequence[str], tags: Sequence[str] = (), max_chars: int = 2000) -> str:
    """Make judged text inert: remove chat special tokens and our delimiter tags, then truncate.

    - every string in `special_tokens` is deleted (otherwise '<|im_end|>' inside a response would be
      tokenized as a real turn boundary and could fake the judge's own answer);
    - any tag named in `tags` (opening or closing, any case and spacing, e.g. '</ response >') becomes
      '[tag removed]', so the response cannot close the block it is wrapped in;
    - the text is cut to `max_chars` characters.
    """
    out = text or ""
    for tok in special_tokens:
        out = out.replace(tok, "")
    if tags:
        names = "|".join(re.escape(t) for t in tags)
        out = re.sub(rf"<\s*/?\s*(?:{names})\b[^>]*>", "[tag removed]", out, flags=re.IGNORECASE)
    if len(out) > max_chars:
        out = out[:max_chars] + TRUNCATION_MARK
    return out


def single_token_ids(tokenizer: Any, words: Sequence[str]) -> list[int]:
    """Ids of the surface forms of `words` (as given, with a leading space, capitalised) that are one token.

    Raises when none of the forms is a single token, since the judge would then read nothing.
    """
    ids: list[int] = []
    for word in words:
        for form in dict.fromkeys([word, " " + word, word.capitalize(), " " + word.capitalize()]):
            enc = tokenizer.encode(form, add_special_tokens=False)
            if len(enc) == 1 and enc[0] not in ids:
                ids.append(enc[0])
    if not ids:
        raise ValueError(
            f"none of the forms of {list(words)} is a single token for this tokenizer; choose answer words that are"
        )
    return ids


def first_token_ids(tokenizer: Any, words: Sequence[str]) -> list[int]:
    """First token id of each surface form of `words` (used when a label word spans several tokens)."""
    ids: list[int] = []
    for word in words:
        for form in dict.fromkeys([word, " " + word, word.capitalize(), " " + word.capitalize()]):
            enc = tokenizer.encode(form, add_special_tokens=False)
            if enc and enc[0] not in ids:
                ids.append(enc[0])
    return ids


def next_token_probs(model: Any, tokenizer: Any, texts: list[str], batch_size: int = 8) -> Any:
    """Next-token probability distributions after each text: float32 tensor (n, vocab), on the CPU.

    Texts are tokenized as-is (chat templates already applied, no extra special tokens); see
    `next_token_probs_ids`.
    """
    ids = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    return next_token_probs_ids(model, tokenizer, ids, batch_size)


def next_token_probs_ids(model: Any, tokenizer: Any, sequences: list[list[int]], batch_size: int = 8) -> Any:
    """Next-token probability distributions after each token sequence: float32 tensor (n, vocab), on the CPU.

    One forward pass per batch, left padding, position ids taken from the attention mask (so a padded
    row gets the same result as the row alone).
    """
    import inspect

    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    keep = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    out = []
    for start in range(0, len(sequences), batch_size):
        chunk = sequences[start : start + batch_size]
        if any(len(s) == 0 for s in chunk):
            raise ValueError("next_token_probs: an input tokenized to zero tokens")
        width = max(len(s) for s in chunk)
        ids = torch.tensor([[pad] * (width - len(s)) + list(s) for s in chunk], device=model.device)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in chunk], device=model.device)
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = model(input_ids=ids, attention_mask=mask, position_ids=pos, **keep).logits
        out.append(torch.softmax(logits[:, -1, :].float(), dim=-1).cpu())
    return torch.cat(out) if out else torch.zeros((0, len(tokenizer)))


def model_id(model: Any, override: str | None = None) -> str:
    """Identity of a model for judge ids and cache keys."""
    if override:
        return override
    from selfmoa.generation import model_fingerprint

    return model_fingerprint(model)
