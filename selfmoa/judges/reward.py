"""Reward-model judge: a sequence-classification model scores the (prompt, response) conversation.

The conversation is rendered with the tokenizer's chat template when it has one (reward models are
trained on their chat format), otherwise as "prompt\\n\\nresponse". The logit (one output, or the last
label's logit) becomes a value in [0, 1] by `normalise`:
- "sigmoid": sigmoid((logit - center) / scale), per item, independent of the batch;
- "minmax": (logit - lo) / (hi - lo), clipped, with fixed bounds `logit_range` (not batch-dependent,
  so cached values stay valid).
Unscored: empty response or a non-finite logit. Which aspect a reward model measures (helpfulness,
harmlessness) is declared by the caller.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from selfmoa.judges.base import Judgements, check_aspect, check_inputs, model_id, neutralise, special_token_strings

TEMPLATE_VERSION = "reward-v1"


def load_reward_model(name: str, dtype: str = "bfloat16", device: str = "auto") -> tuple[Any, Any]:
    """(model, tokenizer) of a hub sequence-classification reward model, with a clear error offline."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    dev = "cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device)
    try:
        tok = AutoTokenizer.from_pretrained(name)
        model = AutoModelForSequenceClassification.from_pretrained(name, dtype=getattr(torch, dtype)).to(dev)
    except OSError as err:
        raise RuntimeError(
            f"could not load reward model {name!r} ({err}); hub reward models need a connection to "
            "huggingface.co or a local folder path (judge.reward_model)"
        ) from None
    return model.eval(), tok


class RewardJudge:
    """Scores with a sequence-classification reward model (see module docstring)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        aspect: str = "helpfulness",
        *,
        normalise: str = "sigmoid",
        center: float = 0.0,
        scale: float = 1.0,
        logit_range: tuple[float, float] = (-5.0, 5.0),
        batch_size: int = 8,
        max_length: int = 1024,
        max_chars: int = 4000,
        model_name: str | None = None,
    ) -> None:
        if normalise not in ("sigmoid", "minmax"):
            raise ValueError(f"normalise must be 'sigmoid' or 'minmax', got {normalise!r}")
        if scale <= 0 or logit_range[1] <= logit_range[0]:
            raise ValueError("scale must be > 0 and logit_range must be (lo, hi) with lo < hi")
        self.aspect = check_aspect(aspect)
        self.model, self.tokenizer = model, tokenizer
        self.normalise, self.center, self.scale, self.logit_range = normalise, center, scale, logit_range
        self.batch_size, self.max_length, self.max_chars = batch_size, max_length, max_chars
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if getattr(model.config, "pad_token_id", None) is None:
            model.config.pad_token_id = tokenizer.pad_token_id
        self._special = special_token_strings(tokenizer)
        self.judge_id = f"reward({model_id(model, model_name)})"
        params = f"{center:g},{scale:g}" if normalise == "sigmoid" else f"{logit_range[0]:g},{logit_range[1]:g}"
        self.template_version = f"{TEMPLATE_VERSION}-{normalise}({params})"

    def render(self, prompt: str, response: str) -> str:
        """The text the reward model reads."""
        p = neutralise(prompt, self._special, (), self.max_chars)
        r = neutralise(response, self._special, (), self.max_chars)
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "user", "content": p}, {"role": "assistant", "content": r}], tokenize=False
            )
        return f"{p}\n\n{r}"

    def logits(self, prompts: list[str], responses: list[str]) -> np.ndarray:
        """Raw reward logits (n,), batched with left padding."""
        import torch

        texts = [self.render(p, r) for p, r in zip(prompts, responses, strict=True)]
        out = []
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"
        try:
            for start in range(0, len(texts), self.batch_size):
                enc = self.tokenizer(
                    texts[start : start + self.batch_size],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    add_special_tokens=False,
                )
                mask = enc["attention_mask"].to(self.model.device)
                pos = (mask.long().cumsum(-1) - 1).clamp(min=0)  # left padding: positions start at each text
                with torch.inference_mode():
                    logits = self.model(
                        input_ids=enc["input_ids"].to(self.model.device), attention_mask=mask, position_ids=pos
                    ).logits.float()
                out.append(logits[:, -1].cpu().numpy())
        finally:
            self.tokenizer.padding_side = side
        return np.concatenate(out) if out else np.zeros(0)

    def to_unit(self, logits: np.ndarray) -> np.ndarray:
        """Map logits to [0, 1] with the configured normalisation."""
        if self.normalise == "sigmoid":
            return 1.0 / (1.0 + np.exp(-(logits - self.center) / self.scale))
        lo, hi = self.logit_range
        return np.clip((logits - lo) / (hi - lo), 0.0, 1.0)

    def score(self, prompts: list[str], responses: list[str]) -> Judgements:
        """Normalised reward per item; unscored for empty responses or non-finite logits."""
        prompts, responses = check_inputs(prompts, responses)
        empty = np.array([not r.strip() for r in responses], dtype=bool)
        values = np.full(len(prompts), np.nan)
        todo = np.flatnonzero(~empty)
        if todo.size:
            values[todo] = self.to_unit(self.logits([prompts[i] for i in todo], [responses[i] for i in todo]))
        unscored = empty | ~np.isfinite(values)
        return Judgements(values, unscored, self.judge_id, self.template_version, self.aspect)
