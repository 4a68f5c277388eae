"""Self-revision under a short safety constitution, and the template refusal fallback (stage 05; not from the paper).

When no sampled answer to a harmful prompt is safe, the policy rewrites its own draft under `CONSTITUTION`
(`revision_prompt` -> `self_revise`), and the rewrite is kept only when the safety judge calls it safe.
`template_refusal` is the fallback chosen answer: a short refusal with a redirect, varied by harm category.
`selfmoa.pairs` builds the pairs from both.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from typing import Any

from selfmoa.config import is_unsafe

CONSTITUTION = """\
1. Do not give instructions, code, recipes or details that help someone hurt people, make weapons or drugs,
commit crimes, break into computer systems, or harass, deceive or discriminate against anyone.
2. If the request asks for that kind of help, say briefly and politely that you can't help with that part.
3. Then offer something safe and useful instead: the legitimate need behind the request, general safety
information, or where to get proper help.
4. Be short and respectful; do not lecture."""

MAX_DRAFT_CHARS = 600

_REFUSAL_OPENERS = (
    "I can't help with that.",
    "Sorry, I can't assist with that request.",
    "I won't help with this, because it could cause real harm.",
)

# (keywords matched in the lower-cased category, redirect sentence); the first match wins.
_REDIRECTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (
        ("cyber", "hack", "intrusion", "malware"),
        "If you're interested in security, I can explain how to protect systems or suggest legal ways to practise, "
        "such as capture-the-flag exercises.",
    ),
    (
        ("chemical", "biolog", "weapon", "violen", "physical"),
        "If you or someone else is in danger, please contact local emergency services. I'm happy to share general "
        "safety information instead.",
    ),
    (
        ("misinformation", "disinformation", "deception", "propaganda"),
        "I can help you find reliable sources on the topic or explain how to spot misleading claims.",
    ),
    (
        ("harass", "hate", "bully", "discrimin"),
        "If you're dealing with a conflict, I can help you find respectful ways to address it.",
    ),
    (("sexual", "adult"), "I can help with general, respectful information about relationships or health instead."),
    (
        ("self-harm", "self harm", "suicide"),
        "If you're going through a hard time, please consider talking to someone you trust or a local crisis line.",
    ),
    (
        ("illegal", "crime", "drug", "fraud", "theft", "goods"),
        "I can explain the relevant laws or point you to legitimate alternatives instead.",
    ),
    (("copyright", "piracy"), "I can summarise the work or help you find legal ways to access it."),
    (("privacy", "personal", "surveillance"), "I can explain how to protect personal information instead."),
)
_DEFAULT_REDIRECT = "Is there something related that I can help with in a safe way?"


def _stable_index(text: str, seed: int, n: int) -> int:
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % n


def template_refusal(prompt: str, category: str | None = None, seed: int = 0) -> str:
    """A short refusal with a redirect that fits the harm category (fallback chosen answer).

    The redirect is picked by keywords in `category` (HarmBench semantic categories, StrongREJECT
    categories and similar names all match); the opening sentence varies deterministically with the
    prompt and seed so that the policy does not learn one fixed string.
    """
    cat = (category or "").lower()
    redirect = next((text for keys, text in _REDIRECTS if any(k in cat for k in keys)), _DEFAULT_REDIRECT)
    opener = _REFUSAL_OPENERS[_stable_index(prompt, seed, len(_REFUSAL_OPENERS))]
    return f"{opener} {redirect}"


def revision_prompt(prompt: str, draft: str) -> str:
    """The user message asking the policy to rewrite its own draft under `CONSTITUTION`.

    The draft is cut to `MAX_DRAFT_CHARS` characters to keep small models' context short. The rewritten
    answer is later paired with the *original* prompt (without the constitution), so the policy learns
    to answer safely without being reminded.
    """
    draft = draft.strip()
    if len(draft) > MAX_DRAFT_CHARS:
        draft = draft[:MAX_DRAFT_CHARS] + " ..."
    return (
        "Here is a request and a draft reply.\n\n"
        f"Request: {prompt.strip()}\n\n"
        f"Draft reply: {draft}\n\n"
        "Rewrite the reply so that it follows these rules:\n"
        f"{CONSTITUTION}\n\n"
        "Write only the rewritten reply."
    )


def self_revise(
    items: Sequence[tuple[str, str]],
    generate_fn: Callable[[list[str]], list[str]],
    safety_fn: Callable[[list[str], list[str]], Sequence[float | None]],
    unsafe_below: float,
) -> dict[str, dict[str, Any]]:
    """Ask the policy to revise its unsafe drafts under the constitution; keep revisions judged safe.

    Args:
        items: (prompt, draft) pairs, e.g. from `prompts_needing_revision`.
        generate_fn: maps user messages to one reply each (the policy, chat template applied inside).
        safety_fn: judges (prompts, responses) -> safety scores in [0, 1] (None/NaN = unscored). The
            revision is judged against the original prompt.
        unsafe_below: `judge.unsafe_below`; a revision is kept when it is scored and not `is_unsafe`.

    Returns:
        {prompt: {"response": revision, "safety": score}} for the revisions that were kept.
    """
    if not items:
        return {}
    prompts = [p for p, _ in items]
    replies = list(generate_fn([revision_prompt(p, d) for p, d in items]))
    if len(replies) != len(items):
        raise ValueError(f"generate_fn returned {len(replies)} replies for {len(items)} prompts")
    scores = list(safety_fn(prompts, replies))
    if len(scores) != len(items):
        raise ValueError(f"safety_fn returned {len(scores)} scores for {len(items)} responses")
    kept = {}
    for prompt, reply, score in zip(prompts, replies, scores, strict=True):
        scored = score is not None and not math.isnan(float(score))
        if reply.strip() and scored and not is_unsafe(score, unsafe_below):
            kept[prompt] = {"response": reply.strip(), "safety": float(score)}
    return kept


def safety_scores_fn(safety_judge: Any) -> Callable[[list[str], list[str]], list[float | None]]:
    """`(prompts, responses) -> safety scores (None = unscored)` from a judge, for `self_revise`."""

    def fn(prompts: list[str], responses: list[str]) -> list[float | None]:
        j = safety_judge.score(prompts, responses)
        return [None if u else float(v) for v, u in zip(j.values, j.unscored, strict=True)]

    return fn
