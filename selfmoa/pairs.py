"""Preference pairs from the policy's own judged responses (pure functions; the rule is not from the paper).

Input: one record per sampled response, ``{"prompt", "response", "prompt_kind", "safety", "helpful"}`` with
optional ``"refused"`` (bool, from a refusal detector) and ``"category"`` (harm category). ``safety`` s and
``helpful`` h lie in [0, 1]; None or NaN means *unscored* and the response is left out (never read as 0).
A response is *unsafe* when `selfmoa.config.is_unsafe(s, unsafe_below)` (s < `judge.unsafe_below`), else *safe*.

Ordering rule (this project's choice, not from the paper). Secondary readings of the paper order pairs by
helpfulness and put the safety difference in the loss margin (see `selfmoa.losses`). Ordering by raw
helpfulness would reward compliance on harmful prompts (the most "helpful" answer to a bomb request is
the recipe), so each response gets a *tier* and a within-tier value:

- harmful prompt: tier 1 = safe. Safe answers are ordered by h + q, where q (`refusal_quality`) rewards an
  answer that addresses the request: 0.5 when it is on topic (MiniLM cosine to the prompt, ``topicality``,
  at least `selfmoa.evaluation.OFF_TOPIC_BELOW`) plus 0.5 when a refusal is followed by a reason, an offer
  or a pointer to help (``alternative``, `selfmoa.revision.offers_alternative`), so a refusal that names what
  it declines and offers a safe alternative beats a canned line; unsafe answers by s (the least safe
  answer is the worst). Rows without these fields get q = 0.
- benign prompt and *contrast* prompt (a benign prompt that looks harmful, `selfmoa.contrast`): tier 1 =
  safe and not a refusal. Answers are ordered by h within a tier, so a helpful answer beats a refusal of a
  legitimate question (the over-refusal guard).

The chosen answer must be in tier 1 (a pair never teaches "this unsafe answer is better" or "this refusal
of a benign question is better"). A pair (chosen a, rejected b) is kept when a's tier is higher, or both
are in tier 1 and a's within-tier value exceeds b's by at least `min_gap`. Rules: ``best_vs_worst`` (one
pair per prompt: the top-ranked against the bottom-ranked answer) or ``all_pairs`` (every admissible pair).

When no sampled answer to a harmful prompt is safe, the policy writes its own safe answer by self-revision
under `selfmoa.revision.CONSTITUTION` (`prompts_needing_revision` -> `selfmoa.revision.self_revise`, kept only when the safety judge says
safe); otherwise the configured fallback applies: ``template_refusal`` (a short refusal with a redirect,
varied by harm category; its safety is set to 1.0 by construction, its helpfulness is unscored) or
``drop``. When no sampled answer to a contrast prompt is helpful (tier 1), the policy's helpful revision
(`selfmoa.revision.helpful_revise`) is the chosen answer, else ``contrast_fallback``: ``template_answer``
(`selfmoa.revision.template_answer`, for safe-twin families that have one) or ``drop``; the rejected answer
is a refusal. Each pair records the source of its chosen answer: ``sampled``, ``self_revision`` or
``template``; `pair_metrics` counts them per prompt kind.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from selfmoa.config import is_unsafe
from selfmoa.evaluation import OFF_TOPIC_BELOW
from selfmoa.revision import offers_alternative, template_answer, template_refusal
from selfmoa.sets.registry import largest_remainder
from selfmoa.text import text_key

SOURCES = ("sampled", "self_revision", "template")
RULES = ("best_vs_worst", "all_pairs")
ORDERS = ("tiered", "safety", "helpfulness")
FALLBACKS = ("template_refusal", "drop")
CONTRAST_FALLBACKS = ("template_answer", "drop")
PROMPT_KINDS = ("harmful", "benign", "contrast")


class EvalContaminationError(ValueError):
    """A training pair uses an evaluation prompt."""


@dataclass(frozen=True)
class PairResult:
    """Pairs built for one iteration, with the source of every chosen answer and bookkeeping counts.

    Attributes:
        pairs: one dict per pair (see `build_pairs`).
        sources: number of pairs whose chosen answer came from each source in `SOURCES`.
        stats: prompts, responses_used, responses_unscored, prompts_without_pair, harmful_without_safe,
            dropped_no_safe (harmful prompts left out under fallback ``drop``), contrast_without_helpful,
            dropped_no_helpful (contrast prompts left without a chosen answer), capped (pairs cut by max_pairs).
    """

    pairs: list[dict[str, Any]]
    sources: dict[str, int]
    stats: dict[str, int] = field(default_factory=dict)


def _is_scored(value: Any) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def refusal_quality(sample: dict[str, Any]) -> float:
    """q in {0, 0.5, 1}: on topic (``topicality`` >= `OFF_TOPIC_BELOW`) and offering an alternative (``alternative``).

    A choice of this project, not from the paper; missing fields count as 0.
    """
    topical = sample.get("topicality")
    on_topic = _is_scored(topical) and float(topical) >= OFF_TOPIC_BELOW
    return 0.5 * on_topic + 0.5 * bool(sample.get("alternative"))


def _rank(sample: dict[str, Any], kind: str, unsafe_below: float, order: str = "tiered") -> tuple[int, float]:
    """(tier, within-tier value) of a scored response; see the module docstring."""
    s, h = float(sample["safety"]), float(sample["helpful"])
    safe = not is_unsafe(s, unsafe_below)
    if order == "safety":
        return (1 if safe else 0), s
    if order == "helpfulness":
        return 1, h
    if kind == "harmful":
        return (1, h + refusal_quality(sample)) if safe else (0, s)
    acceptable = safe and not bool(sample.get("refused", False))
    return (1 if acceptable else 0), h


def _admissible(a: tuple[int, float], b: tuple[int, float], min_gap: float) -> bool:
    """True when a response ranked `a` may be chosen over one ranked `b`."""
    if a[0] != 1:
        return False
    if a[0] > b[0]:
        return True
    return a[1] > b[1] and a[1] - b[1] >= min_gap


def _validate(samples: Sequence[dict[str, Any]], unsafe_below: float) -> None:
    if not 0.0 <= unsafe_below <= 1.0:
        raise ValueError(f"unsafe_below must lie in [0, 1], got {unsafe_below}")
    for i, row in enumerate(samples):
        missing = [k for k in ("prompt", "response", "prompt_kind", "safety", "helpful") if k not in row]
        if missing:
            raise ValueError(
                f"sample {i}: missing key(s) {missing}; each sample needs prompt, response, "
                "prompt_kind, safety and helpful (None/NaN = unscored)"
            )
        if row["prompt_kind"] not in PROMPT_KINDS:
            raise ValueError(f"sample {i}: prompt_kind {row['prompt_kind']!r} is not one of {list(PROMPT_KINDS)}")
        for key in ("safety", "helpful"):
            v = row[key]
            if _is_scored(v) and not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"sample {i}: {key} score {v} is outside [0, 1]")


def _group(samples: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Samples by prompt, in order of first appearance; one prompt must have one kind."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in samples:
        group = groups.setdefault(row["prompt"], [])
        if group and group[0]["prompt_kind"] != row["prompt_kind"]:
            raise ValueError(
                f"prompt {row['prompt'][:60]!r} appears as both {group[0]['prompt_kind']} and {row['prompt_kind']}"
            )
        group.append(row)
    return groups


def prompts_needing_revision(
    samples: Sequence[dict[str, Any]], unsafe_below: float, kind: str = "harmful"
) -> list[tuple[str, str]]:
    """Prompts of `kind` whose scored samples include no tier-1 answer, each with a draft to revise.

    ``harmful``: no safe answer; the draft is the safest scored sample (the best starting point).
    ``contrast``: no safe non-refusing answer; the draft is the most helpful scored sample (often a refusal).
    Foils (rows marked ``foil``) are never drafts.

    Returns:
        (prompt, draft) pairs.
    """
    if kind not in ("harmful", "contrast"):
        raise ValueError(f"prompts_needing_revision: kind must be 'harmful' or 'contrast', got {kind!r}")
    _validate(samples, unsafe_below)
    out = []
    for prompt, group in _group(samples).items():
        scored = [r for r in group if _is_scored(r["safety"]) and _is_scored(r["helpful"]) and not r.get("foil")]
        if group[0]["prompt_kind"] != kind or not scored:
            continue
        if kind == "contrast":
            if all(_rank(r, kind, unsafe_below)[0] == 0 for r in scored):
                out.append((prompt, max(scored, key=lambda r: float(r["helpful"]))["response"]))
            continue
        if all(is_unsafe(float(r["safety"]), unsafe_below) for r in scored):
            draft = max(scored, key=lambda r: float(r["safety"]))["response"]
            out.append((prompt, draft))
    return out


def _pair(
    prompt: str, kind: str, category: Any, chosen: dict[str, Any], rejected: dict[str, Any], source: str
) -> dict[str, Any]:
    cs, rs = float(chosen["safety"]), float(rejected["safety"])
    return {
        "prompt": prompt,
        "chosen": chosen["response"],
        "rejected": rejected["response"],
        "chosen_safety": cs,
        "rejected_safety": rs,
        "safety_margin": cs - rs,
        "chosen_helpful": float(chosen["helpful"]) if _is_scored(chosen.get("helpful")) else math.nan,
        "rejected_helpful": float(rejected["helpful"]),
        "source": source,
        "prompt_kind": kind,
        "category": category,
    }


def _cap(per_prompt: list[list[dict[str, Any]]], max_pairs: int, seed: int) -> list[dict[str, Any]]:
    """Round-robin over prompts (in a seeded order) so that a cap keeps as many prompts as possible."""
    order = np.random.default_rng(seed).permutation(len(per_prompt)) if per_prompt else []
    lists = [per_prompt[i] for i in order]
    out: list[dict[str, Any]] = []
    depth = 0
    while len(out) < max_pairs and any(depth < len(lst) for lst in lists):
        out.extend(lst[depth] for lst in lists if depth < len(lst))
        depth += 1
    return out[:max_pairs]


def build_pairs(
    samples: Sequence[dict[str, Any]],
    *,
    rule: str = "best_vs_worst",
    order: str = "tiered",
    min_gap: float = 0.1,
    max_pairs: int = 512,
    unsafe_below: float,
    fallback: str = "template_refusal",
    revisions: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
    contrast_fallback: str = "template_answer",
) -> PairResult:
    """Preference pairs per prompt by the tiered helpfulness rule of the module docstring.

    Args:
        samples: one record per response (keys in the module docstring).
        rule: ``best_vs_worst`` or ``all_pairs``.
        order: ``tiered`` (the module docstring's rule), ``safety`` (safety alone: safe answers first,
            each ordered by s; benign prompts, all s = 1, give no pair) or ``helpfulness`` (helpfulness
            alone, no tiers, so no fallback for harmful prompts: the helpfulness-only ablation).
        min_gap: minimum within-tier gap for a pair of two tier-1 answers.
        max_pairs: cap; pairs are taken round-robin over prompts in a seeded order (largest gap first).
        unsafe_below: `judge.unsafe_below` (see `selfmoa.config.is_unsafe`).
        fallback: for harmful prompts with no safe sample and no kept revision: ``template_refusal`` or ``drop``.
        revisions: kept revisions, {prompt: {"response", "safety"}} from `self_revise` (harmful prompts) and
            `helpful_revise` (contrast prompts).
        seed: seed of the cap's prompt order and of the template wording.
        contrast_fallback: for contrast prompts with no helpful sample and no kept revision: ``template_answer``
            (needs a safe-twin ``family`` and ``topic`` on the rows) or ``drop``.

    Returns:
        `PairResult`; each pair has prompt, chosen, rejected, chosen_safety, rejected_safety,
        safety_margin (= chosen_safety - rejected_safety), chosen_helpful, rejected_helpful, source,
        prompt_kind and category.
    """
    if rule not in RULES:
        raise ValueError(f"rule {rule!r} is not one of {list(RULES)}")
    if order not in ORDERS:
        raise ValueError(f"order {order!r} is not one of {list(ORDERS)}")
    if fallback not in FALLBACKS:
        raise ValueError(f"fallback {fallback!r} is not one of {list(FALLBACKS)}")
    if contrast_fallback not in CONTRAST_FALLBACKS:
        raise ValueError(f"contrast_fallback {contrast_fallback!r} is not one of {list(CONTRAST_FALLBACKS)}")
    if min_gap < 0 or max_pairs < 1:
        raise ValueError(f"need min_gap >= 0 and max_pairs >= 1, got {min_gap} and {max_pairs}")
    _validate(samples, unsafe_below)
    revisions = revisions or {}
    stats = dict.fromkeys(
        (
            "prompts",
            "responses_used",
            "responses_unscored",
            "prompts_without_pair",
            "harmful_without_safe",
            "dropped_no_safe",
            "contrast_without_helpful",
            "dropped_no_helpful",
            "capped",
        ),
        0,
    )
    per_prompt: list[list[dict[str, Any]]] = []
    for prompt, group in _group(samples).items():
        stats["prompts"] += 1
        kind = group[0]["prompt_kind"]
        category = next((r.get("category") for r in group if r.get("category")), None)
        scored = [r for r in group if _is_scored(r["safety"]) and _is_scored(r["helpful"])]
        stats["responses_unscored"] += len(group) - len(scored)
        stats["responses_used"] += len(scored)
        ranked = sorted(
            ((_rank(r, kind, unsafe_below, order), i, r) for i, r in enumerate(scored)),
            key=lambda t: (-t[0][0], -t[0][1], t[1]),
        )
        pairs = []
        if rule == "best_vs_worst" and ranked:
            (ra, _, a), (rb, _, b) = ranked[0], ranked[-1]
            if _admissible(ra, rb, min_gap) and a["response"] != b["response"]:
                pairs.append((ra[0] - rb[0] + ra[1] - rb[1], _pair(prompt, kind, category, a, b, "sampled")))
        elif rule == "all_pairs":
            for ra, _, a in ranked:
                for rb, _, b in ranked:
                    if _admissible(ra, rb, min_gap) and a["response"] != b["response"]:
                        pairs.append((ra[0] - rb[0] + ra[1] - rb[1], _pair(prompt, kind, category, a, b, "sampled")))
        if kind == "harmful" and scored and all(t[0][0] == 0 for t in ranked):
            stats["harmful_without_safe"] += 1
            if prompt in revisions:
                chosen = {
                    "response": revisions[prompt]["response"],
                    "safety": revisions[prompt]["safety"],
                    "helpful": revisions[prompt].get("helpful"),
                }
                source = "self_revision"
            elif fallback == "template_refusal":
                chosen = {"response": template_refusal(prompt, category, seed), "safety": 1.0, "helpful": None}
                source = "template"
            else:
                chosen, source = None, ""
                stats["dropped_no_safe"] += 1
            if chosen is not None:
                rejected = [r for _, _, r in ranked] if rule == "all_pairs" else [ranked[-1][2]]
                pairs.extend(
                    (1.0 - float(b["safety"]), _pair(prompt, kind, category, chosen, b, source))
                    for b in rejected
                    if b["response"] != chosen["response"]
                )
        if kind == "contrast" and scored and all(t[0][0] == 0 for t in ranked):
            stats["contrast_without_helpful"] += 1
            pairs.extend(_contrast_fallback(prompt, group, ranked, rule, revisions, contrast_fallback, stats))
        if not pairs:
            stats["prompts_without_pair"] += 1
            continue
        pairs.sort(key=lambda t: -t[0])
        per_prompt.append([p for _, p in pairs])
    total = sum(len(p) for p in per_prompt)
    kept = _cap(per_prompt, max_pairs, seed)
    stats["capped"] = total - len(kept)
    sources = {s: sum(p["source"] == s for p in kept) for s in SOURCES}
    return PairResult(pairs=kept, sources=sources, stats=stats)


def _contrast_fallback(
    prompt: str,
    group: list[dict[str, Any]],
    ranked: list[tuple[tuple[int, float], int, dict[str, Any]]],
    rule: str,
    revisions: dict[str, dict[str, Any]],
    contrast_fallback: str,
    stats: dict[str, int],
) -> list[tuple[float, dict[str, Any]]]:
    """Helpful-over-refusal pairs for a contrast prompt none of whose samples is a helpful answer."""
    category = next((r.get("category") for r in group if r.get("category")), None)
    if prompt in revisions:
        rev = revisions[prompt]
        chosen, source = {"response": rev["response"], "safety": 1.0, "helpful": rev.get("helpful")}, "self_revision"
    else:
        first = group[0]
        text = (
            template_answer(first.get("topic"), first.get("family")) if contrast_fallback == "template_answer" else None
        )
        if text is None:
            stats["dropped_no_helpful"] += 1
            return []
        chosen, source = {"response": text, "safety": 1.0, "helpful": None}, "template"
    refusals = [r for _, _, r in ranked if r.get("refused")] or [ranked[-1][2]]
    rejected = refusals if rule == "all_pairs" else [refusals[-1]]
    return [
        (1.0, _pair(prompt, "contrast", category, chosen, b, source))
        for b in rejected
        if b["response"] != chosen["response"]
    ]


def curated_pairs(rows: Sequence[dict[str, Any]], seed: int = 0) -> list[dict[str, Any]]:
    """The static curated-data DPO baseline's pairs (labels by construction, no judge; not from the paper).

    Harmful prompt: a written refusal with a redirect (`template_refusal`, safety 1) is chosen over the
    curated compliant answer (safety 0). Benign prompt: the curated helpful answer is chosen over a refusal
    (both safety 1, so a zero safety margin).

    Args:
        rows: `selfmoa.data.static_curated_pairs()` rows: prompt, kind ('harmful'/'benign'), answer, category.
        seed: seed of the refusal wording.
    """
    out = []
    for r in rows:
        if r["kind"] not in PROMPT_KINDS:
            raise ValueError(f"curated row {r.get('id')!r}: kind {r['kind']!r} is not one of {list(PROMPT_KINDS)}")
        refusal = {"response": template_refusal(r["prompt"], r.get("category"), seed), "safety": 1.0, "helpful": 0.0}
        if r["kind"] == "harmful":
            chosen, rejected = refusal, {"response": r["answer"], "safety": 0.0, "helpful": 1.0}
        else:
            chosen, rejected = {"response": r["answer"], "safety": 1.0, "helpful": 1.0}, refusal
        out.append(_pair(r["prompt"], r["kind"], r.get("category"), chosen, rejected, "curated"))  # not a loop source
    return out


def subsample_pairs(pairs: Sequence[dict[str, Any]], n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` pairs drawn without replacement, keeping the harmful/benign shares of `pairs` (largest remainder).

    Returns all pairs, in order, when `n` is at least their number.
    """
    if n < 1:
        raise ValueError(f"need n >= 1 pairs, got {n}")
    if n >= len(pairs):
        return list(pairs)
    rng = np.random.default_rng(seed)
    by_kind = {k: [i for i, p in enumerate(pairs) if p["prompt_kind"] == k] for k in PROMPT_KINDS}
    take = largest_remainder({k: len(idx) for k, idx in by_kind.items()}, n)
    keep = sorted(int(i) for k, idx in by_kind.items() if take[k] for i in rng.choice(idx, take[k], replace=False))
    return [pairs[i] for i in keep]


def revisions_from_pairs(pairs: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The kept self-revisions recorded in built pairs, in the `revisions` shape `build_pairs` takes."""
    return {
        p["prompt"]: {"response": p["chosen"], "safety": p["chosen_safety"], "helpful": p.get("chosen_helpful")}
        for p in pairs
        if p["source"] == "self_revision"
    }


def flip_safety(scores: Iterable[float | None], fraction: float, seed: int = 0) -> np.ndarray:
    """Label noise for the weak-supervision sweep: flip a fraction of the safety decisions (s -> 1 - s).

    Exactly ``round(fraction * n_scored)`` scored entries, chosen uniformly with `seed`, are replaced by
    ``1 - s``; unscored entries (None/NaN) stay NaN. With the threshold 0.5 this flips the binary
    safe/unsafe decision of every chosen entry (except s = 0.5 exactly). Apply it before `build_pairs`.

    Returns:
        A new float array (the input is not modified).
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must lie in [0, 1], got {fraction}")
    out = np.array([math.nan if v is None else float(v) for v in scores], dtype=float)
    scored = np.flatnonzero(~np.isnan(out))
    n_flip = int(round(fraction * len(scored)))
    idx = np.random.default_rng(seed).choice(scored, size=n_flip, replace=False) if n_flip else scored[:0]
    out[idx] = 1.0 - out[idx]
    return out


def assert_no_eval_prompts(pairs: Iterable[dict[str, Any]], eval_prompts: Iterable[str]) -> None:
    """Raise `EvalContaminationError` when any pair's prompt is an evaluation prompt.

    Prompts are compared by `selfmoa.text.text_key` (the key the data pools are kept disjoint by). Near-duplicates
    are a separate check, with embeddings, when red-team prompts are generated.
    """
    held_out = {text_key(p) for p in eval_prompts}
    hits = sorted({p["prompt"] for p in pairs if text_key(p["prompt"]) in held_out})
    if hits:
        shown = "; ".join(repr(h[:60]) for h in hits[:3])
        raise EvalContaminationError(
            f"{len(hits)} training pair prompt(s) are evaluation prompts (e.g. {shown}). Evaluation sets must "
            "stay held out: remove these prompts from the red-team seed pool / benign pool and rebuild the pairs."
        )


# --------------------------------------------------------------------------------------------------
# Stage 05 with the run's settings
# --------------------------------------------------------------------------------------------------


def pair_inputs(
    judged: Sequence[dict[str, Any]], label_noise: float, seed: int, benign_foil: bool = True
) -> list[dict[str, Any]]:
    """Judged samples (stage 04) in the shape `build_pairs` expects (not from the paper where marked).

    - `label_noise` of the safety decisions are flipped first (the weak-supervision sweep).
    - Benign and contrast prompts get safety 1.0: the safety judges are built for harmful prompts (the refusal
      judge calls every helpful answer to a benign prompt unsafe), so their pairs are ordered by helpfulness
      and refusal alone and carry a zero safety margin (not from the paper).
    - With `benign_foil`, every benign prompt also gets a template refusal (helpfulness 0, marked `foil`), so
      its best answer is paired against a refusal (not from the paper).
    - Every contrast prompt gets the policy's own refusal from stage 02 (`policy_refusal`) as a foil, so its
      helpful answer is paired against the refusal the policy actually gave, or a template refusal where the
      policy answered it (`redteam.contrast_top_up`) (not from the paper).
    """
    safety = list(flip_safety([r["safety"] for r in judged], label_noise, seed)) if label_noise > 0 else None
    out = []
    for i, r in enumerate(judged):
        s = r["safety"] if safety is None else safety[i]
        s = float(s) if _is_scored(s) else None
        if r["kind"] in ("benign", "contrast"):
            s = 1.0
        out.append({**r, "prompt_kind": r["kind"], "helpful": r["helpfulness"], "safety": s})
    seen = set()
    for r in list(out):
        if r["prompt"] in seen or r["kind"] not in ("benign", "contrast"):
            continue
        seen.add(r["prompt"])
        if r["kind"] == "contrast":
            refusal = r.get("policy_refusal") or template_refusal(r["prompt"], r.get("category"), seed)
        elif benign_foil:
            refusal = template_refusal(r["prompt"], r.get("category"), seed)
        else:
            continue
        foil = {"response": refusal, "safety": 1.0, "helpful": 0.0, "helpfulness": 0.0, "refused": True}
        out.append({**r, "sample": -1, **foil, "foil": True})
    return out


def annotate_refusals(
    rows: Sequence[dict[str, Any]], embed_fn: Callable[[list[str]], np.ndarray] | None = None
) -> list[dict[str, Any]]:
    """Rows of harmful prompts with ``topicality`` (MiniLM cosine prompt/response) and ``alternative``.

    The inputs of `refusal_quality` (a choice of this project, not from the paper); other rows are unchanged.
    """
    from selfmoa.embeddings import paired_similarity

    idx = [i for i, r in enumerate(rows) if r.get("prompt_kind", r.get("kind")) == "harmful"]
    sims = paired_similarity([rows[i]["prompt"] for i in idx], [rows[i]["response"] for i in idx], embed_fn)
    out = [dict(r) for r in rows]
    for i, sim in zip(idx, sims, strict=True):
        out[i]["topicality"] = sim
        out[i]["alternative"] = offers_alternative(out[i]["response"])
    return out


def build_pairs_for(
    cfg: Any, rows: Sequence[dict[str, Any]], revisions: dict[str, dict[str, Any]], seed: int
) -> PairResult:
    """`build_pairs` with a run config's `pairs` settings and `judge.unsafe_below`."""
    p = cfg.pairs
    return build_pairs(
        rows,
        rule=p.rule,
        order=p.order,
        min_gap=p.min_gap,
        max_pairs=p.max_pairs,
        unsafe_below=cfg.judge.unsafe_below,
        fallback=p.fallback,
        revisions=revisions,
        seed=seed,
        contrast_fallback=p.contrast_fallback,
    )


def pair_metrics(
    result: PairResult,
    n_needing_revision: int,
    n_revisions_kept: int,
    label_noise: float,
    n_contrast_needing_revision: int = 0,
    n_contrast_revisions_kept: int = 0,
) -> dict:
    """Stage 05's metrics: pair counts by kind, by source and by (kind, source), bookkeeping counts, mean margin."""
    built = result.pairs
    return {
        "n_pairs": len(built),
        "sources": result.sources,
        **result.stats,
        "n_harmful_pairs": sum(p["prompt_kind"] == "harmful" for p in built),
        "n_benign_pairs": sum(p["prompt_kind"] == "benign" for p in built),
        "n_contrast_pairs": sum(p["prompt_kind"] == "contrast" for p in built),
        "sources_by_kind": {
            k: {s: sum(p["prompt_kind"] == k and p["source"] == s for p in built) for s in SOURCES}
            for k in PROMPT_KINDS
        },
        "n_needing_revision": n_needing_revision,
        "n_revisions_kept": n_revisions_kept,
        "n_contrast_needing_revision": n_contrast_needing_revision,
        "n_contrast_revisions_kept": n_contrast_revisions_kept,
        "label_noise": label_noise,
        "mean_safety_margin": float(np.mean([p["safety_margin"] for p in built])) if built else None,
    }
