"""Self-revision under a short safety constitution, and the template fallbacks (stage 05; not from the paper).

When no sampled answer to a harmful prompt is safe, the policy rewrites its own draft under `CONSTITUTION`
(`revision_prompt` -> `self_revise`), and the rewrite is kept only when the safety judge calls it safe.
`template_refusal` is the fallback chosen answer: a short *topical* refusal that restates what it declines
and offers a safe alternative that fits the harm category.

For contrast prompts (benign prompts that look harmful, `selfmoa.contrast`) the policy is asked to answer
helpfully without refusing (`helpful_revision_prompt` -> `helpful_revise`); the answer is kept only when it
is not a refusal and the helpfulness judge scores it at least `HELPFUL_MIN`. `template_answer` is their
fallback. `offers_alternative` tells a refusal that offers something (a reason, an alternative, a pointer to
help) from a bare line. All of these are choices of this project, not from the paper. `selfmoa.pairs`
builds the pairs from them.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from selfmoa.config import is_unsafe
from selfmoa.mutations import behaviour_topic

CONSTITUTION = """\
1. Do not give instructions, code, recipes or details that help someone hurt people, make weapons or drugs,
commit crimes, break into computer systems, or harass, deceive or discriminate against anyone.
2. If the request asks for that kind of help, say briefly and politely that you can't help with that part.
3. Then offer something safe and useful instead: the legitimate need behind the request, general safety
information, or where to get proper help.
4. Be short and respectful; do not lecture."""

MAX_DRAFT_CHARS = 600

HELPFUL_MIN = 0.5  # a helpful revision of a contrast prompt is kept at this helpfulness or above

# Opening sentences of a template refusal; {t} restates the request's topic (`request_topic`).
_REFUSAL_OPENERS = (
    "I can't help with your request about {t}.",
    "Sorry, I won't provide help or details on {t}.",
    "I'm not able to help with {t}, because it could cause real harm.",
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
    (("copyright", "piracy"), "I can help you summarise the work or find legal ways to access it."),
    (("privacy", "personal", "surveillance"), "I can explain how to protect personal information instead."),
)
_DEFAULT_REDIRECT = "Is there something related that I can help with in a safe way?"


def _stable_index(text: str, seed: int, n: int) -> int:
    digest = hashlib.sha256(f"{seed}:{text}".encode()).digest()
    return int.from_bytes(digest[:4], "big") % n


_REQUEST_SENTENCE = re.compile(
    r"\b(?:how (?:to|do|can|could|would|should|did)|what|which|where|why|explain|describe|write|give|tell|provide|"
    r"list|create|generate|teach|detail|answer)\b",
    flags=re.IGNORECASE,
)
MAX_TOPIC_WORDS = 6


def request_topic(prompt: str) -> str:
    """A short phrase naming what a request is about, for restating it in a refusal (not from the paper).

    Long prompts (jailbreak wrappers) are reduced to their last sentence that asks for something (a question
    or a request verb), then `selfmoa.mutations.behaviour_topic` takes its noun phrase; at most
    `MAX_TOPIC_WORDS` words.
    """
    text = " ".join(prompt.split())
    parts = [p for p in re.split(r"(?<=[.!?])\s+", text) if p.strip()]
    asks = [p for p in parts if p.endswith("?") or _REQUEST_SENTENCE.search(p)]
    core = (asks or parts or [text])[-1]
    ask = _REQUEST_SENTENCE.search(core)
    core = core[ask.start() :] if ask else core
    topic = behaviour_topic(core, max_words=MAX_TOPIC_WORDS) if core.strip() else ""
    return topic or "this request"


def template_refusal(prompt: str, category: str | None = None, seed: int = 0) -> str:
    """A short topical refusal: it restates what it declines and offers a safe alternative (fallback chosen answer).

    A choice of this project, not from the paper. The opening sentence names the request's topic
    (`request_topic`) and varies deterministically with the prompt and seed, so the policy does not learn one
    fixed string; the redirect is picked by keywords in `category` (HarmBench semantic categories,
    StrongREJECT categories and similar names all match) and offers something safe that fits it.
    """
    cat = (category or "").lower()
    redirect = next((text for keys, text in _REDIRECTS if any(k in cat for k in keys)), _DEFAULT_REDIRECT)
    opener = _REFUSAL_OPENERS[_stable_index(prompt, seed, len(_REFUSAL_OPENERS))]
    return f"{opener.format(t=request_topic(prompt))} {redirect}"


def offers_alternative(text: str) -> bool:
    """Whether a refusal is followed by a sentence that supports it: a reason, an offer or a pointer to help.

    Reuses the refusal judge's sentence rules (`selfmoa.judges.refusal.refuses` and `supports`); a canned
    "I can't help with that." offers nothing. A choice of this project, not from the paper.
    """
    from selfmoa.judges.refusal import refuses, sentences, supports

    seen = False
    for _, sentence in sentences(text):
        if refuses(sentence):
            seen = True
        elif seen and supports(sentence):
            return True
    return False


# Template answers to contrast prompts by safe-twin family ({t}: the prompt's topic); other families get none.
_TEMPLATE_ANSWERS = {
    "definition": (
        'Sure. "{t}" is a term used openly in news reports, textbooks and laws. A dictionary or encyclopedia '
        "entry gives its precise meaning and the context it is used in, and I'm happy to go through any part of it."
    ),
    "history": (
        "Sure. The history of {t} is well documented: historians describe how it arose, the harm it did, and how "
        "laws, institutions and public attitudes changed in response. A library or an encyclopedia is a good "
        "place to read more, and I'm happy to walk through any period."
    ),
    "protection": (
        "Good question. To protect yourself from {t}, learn the common warning signs, keep your home, devices and "
        "accounts secured, agree a plan with people you trust, and report anything suspicious to the police or "
        "the relevant authority."
    ),
    "fiction": (
        "Sure! Describe {t} through the characters' reactions and what happens next rather than through any "
        "technical detail: that keeps the scene vivid, safe and fun to play or read."
    ),
}


def template_answer(topic: str | None, family: str | None) -> str | None:
    """A templated, non-refusing answer to a contrast prompt of a safe-twin `family` (None for other families).

    The fallback chosen answer when the policy neither sampled nor revised a helpful answer; a choice of this
    project, not from the paper. Only the families whose harmless reading has a generic honest answer
    (definition, history, protection, fiction) get one; `topic` is the one the twin was written about
    (the contrast row's ``topic``).
    """
    text = _TEMPLATE_ANSWERS.get(family or "")
    return text.format(t=topic) if text and topic else None


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


def scores_fn(judge: Any) -> Callable[[list[str], list[str]], list[float | None]]:
    """`(prompts, responses) -> scores (None = unscored)` from a judge (safety or helpfulness ensemble)."""

    def fn(prompts: list[str], responses: list[str]) -> list[float | None]:
        j = judge.score(prompts, responses)
        return [None if u else float(v) for v, u in zip(j.values, j.unscored, strict=True)]

    return fn


safety_scores_fn = scores_fn  # for `self_revise`, with the safety judge


def helpful_revision_prompt(prompt: str, draft: str) -> str:
    """The user message asking the policy to answer a contrast prompt helpfully instead of refusing it.

    The refused draft is cut to `MAX_DRAFT_CHARS`; the answer is later paired with the original prompt.
    """
    draft = draft.strip()
    if len(draft) > MAX_DRAFT_CHARS:
        draft = draft[:MAX_DRAFT_CHARS] + " ..."
    return (
        "This question is harmless, even though some of its words may sound alarming. "
        "Here is a draft reply that refused it.\n\n"
        f"Question: {prompt.strip()}\n\n"
        f"Draft reply: {draft}\n\n"
        "Write a short, helpful and factual answer to the question. Do not refuse and do not apologise. "
        "Write only the answer."
    )


def helpful_revise(
    items: Sequence[tuple[str, str]],
    generate_fn: Callable[[list[str]], list[str]],
    helpful_fn: Callable[[list[str], list[str]], Sequence[float | None]],
    refused_fn: Callable[[list[str]], Sequence[bool]],
    min_helpful: float = HELPFUL_MIN,
) -> dict[str, dict[str, Any]]:
    """Ask the policy to answer refused contrast prompts helpfully; keep answers that help and do not refuse.

    Args:
        items: (prompt, refused draft) pairs, e.g. from `selfmoa.pairs.prompts_needing_revision(kind="contrast")`.
        generate_fn: maps user messages to one reply each (the policy).
        helpful_fn: (prompts, responses) -> helpfulness in [0, 1] (None/NaN = unscored), judged on the original prompt.
        refused_fn: responses -> refusal decisions (`selfmoa.judging.refused_flags`).
        min_helpful: keep an answer scored at least this helpful.

    Returns:
        {prompt: {"response", "safety": 1.0, "helpful"}} for the answers kept (benign prompts carry safety 1.0,
        as in `selfmoa.pairs.pair_inputs`).
    """
    if not items:
        return {}
    prompts = [p for p, _ in items]
    replies = [r.strip() for r in generate_fn([helpful_revision_prompt(p, d) for p, d in items])]
    if len(replies) != len(items):
        raise ValueError(f"generate_fn returned {len(replies)} replies for {len(items)} prompts")
    scores, refused = list(helpful_fn(prompts, replies)), list(refused_fn(replies))
    if len(scores) != len(items) or len(refused) != len(items):
        raise ValueError(f"helpful_fn / refused_fn returned {len(scores)} / {len(refused)} values for {len(items)}")
    kept = {}
    for prompt, reply, score, ref in zip(prompts, replies, scores, refused, strict=True):
        scored = score is not None and not math.isnan(float(score))
        if reply and not ref and scored and float(score) >= min_helpful:
            kept[prompt] = {"response": reply, "safety": 1.0, "helpful": float(score)}
    return kept
