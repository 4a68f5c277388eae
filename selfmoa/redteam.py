"""Progressive, model-specific red-teaming (stage 02).

Each round an attacker LM writes new attack prompts, few-shot conditioned on a harm category, seed
behaviours drawn from the *training* pool and the attacks that already succeeded against the current
policy; template mutations of seed behaviours and of previous successes are added; near-duplicates are
dropped; the policy answers every candidate (caller) and the attacks it failed on are kept first.
The successes of a round seed the next round.

The paper states only that red-team prompts are generated dynamically and are model-specific
(see METHOD.md). Everything below is **not from the paper**: the attacker instruction, the parsing
rules, the mutation templates (drawn from well-known jailbreak families: role-play, hypothetical framing,
past-tense reformulation, research framing, fiction, prefix injection and refusal suppression), the
candidate budget split and the selection rule.

Row format of an attack: ``{"id", "prompt", "category", "origin", "parent", "seed_ids"}`` where
``origin`` is ``"attacker_lm"``, ``"mutation:<name>"`` or ``"seed"``, ``parent`` is the id of the seed row
(or of the successful attack) it derives from (for attacker-LM attacks: the first seed shown), and
``seed_ids`` lists every training-pool id it was conditioned on. `select_for_policy` adds ``safety``,
``n_scored`` and ``success``.

The only model calls are the caller's ``generate_fn(prompts) -> texts`` (the attacker, `selfmoa.attacker`)
and ``answer`` (the policy); everything else is pure. Template mutations live in `selfmoa.mutations`.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from selfmoa.attacker import GenerateFn, attacker_prompt, parse_attack
from selfmoa.config import RedTeamConfig, is_unsafe
from selfmoa.evaluation import attack_success_rate, scored_values
from selfmoa.mutations import MUTATIONS, mutate
from selfmoa.text import normalise_text

log = logging.getLogger(__name__)

EmbedFn = Callable[[list[str]], np.ndarray]

ORIGIN_LM = "attacker_lm"
ORIGIN_SEED = "seed"
MUTATION_PREFIX = "mutation:"

# --------------------------------------------------------------------------------------------------
# Proposing candidates
# --------------------------------------------------------------------------------------------------


def attack_id(prompt: str) -> str:
    """Stable id of an attack prompt (same text, same id, in every run)."""
    return "atk-" + hashlib.sha256(normalise_text(prompt).encode()).hexdigest()[:12]


def _attack(prompt: str, category: str, origin: str, parent: str | None, seed_ids: list[str]) -> dict[str, Any]:
    return {
        "id": attack_id(prompt),
        "prompt": prompt,
        "category": category,
        "origin": origin,
        "parent": parent,
        "seed_ids": list(seed_ids),
    }


def _check_pool(seed_rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    if not seed_rows:
        raise ValueError("propose_attacks needs a non-empty training seed pool (e.g. data.train_seed_pool(seed))")
    pool = []
    for i, row in enumerate(seed_rows):
        missing = [k for k in ("id", "prompt", "category") if k not in row]
        if missing:
            raise ValueError(f"seed row {i} lacks {missing}; seed rows need 'id', 'prompt' and 'category'")
        if not str(row["prompt"]).strip():
            raise ValueError(f"seed row {row['id']!r} has an empty prompt")
        pool.append({"id": str(row["id"]), "prompt": str(row["prompt"]), "category": str(row["category"])})
    return pool


def _check_successes(successes: Sequence[str | Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for s in successes:
        if isinstance(s, str):
            out.append({"id": attack_id(s), "prompt": s, "category": "", "seed_ids": []})
        else:
            if "prompt" not in s:
                raise ValueError(f"a success row lacks 'prompt': {dict(s)!r:.200}")
            out.append(
                {
                    "id": str(s.get("id") or attack_id(s["prompt"])),
                    "prompt": str(s["prompt"]),
                    "category": str(s.get("category") or ""),
                    "seed_ids": list(s.get("seed_ids") or []),
                }
            )
    return [s for s in out if s["prompt"].strip()]


def _lm_requests(
    pool: list[dict[str, Any]], successes: list[dict[str, Any]], n: int, cfg: RedTeamConfig, rng: random.Random
) -> list[tuple[str, str, list[str]]]:
    """n (attacker prompt, category, seed ids) requests, round-robin over categories in random order."""
    by_cat: dict[str, list[dict[str, Any]]] = {}
    for row in pool:
        by_cat.setdefault(row["category"], []).append(row)
    cats = sorted(by_cat)
    rng.shuffle(cats)
    requests = []
    for i in range(n):
        cat = cats[i % len(cats)]
        rows = by_cat[cat]
        seeds = rng.sample(rows, min(cfg.seeds_per_prompt, len(rows)))
        same = [s for s in successes if s["category"] == cat] or successes
        shots = rng.sample(same, min(cfg.success_shots, len(same))) if cfg.success_shots else []
        prompt = attacker_prompt(cat, [s["prompt"] for s in seeds], [s["prompt"] for s in shots])
        requests.append((prompt, cat, [s["id"] for s in seeds]))
    return requests


def _mutations(
    sources: list[dict[str, Any]], n: int, names: list[str], rng: random.Random, from_success: bool, seed: int
) -> list[dict[str, Any]]:
    """n mutations, cycling through `names`, each applied to a source drawn without replacement (recycled)."""
    out: list[dict[str, Any]] = []
    order: list[dict[str, Any]] = []
    for i in range(n):
        if not order:
            order = list(sources)
            rng.shuffle(order)
        src = order.pop()
        name = names[i % len(names)]
        prompt = mutate(src["prompt"], name, seed=seed + i)
        seed_ids = src["seed_ids"] if from_success else [src["id"]]
        out.append(_attack(prompt, src["category"], MUTATION_PREFIX + name, src["id"], seed_ids))
    return out


def propose_attacks(
    generate_fn: GenerateFn,
    seed_rows: Sequence[Mapping[str, Any]],
    successes: Sequence[str | Mapping[str, Any]],
    cfg: RedTeamConfig,
    rng_seed: int,
) -> list[dict[str, Any]]:
    """Candidate attacks for one round (before dedup and policy-specific selection).

    Budget (not from the paper): ``cfg.n_candidates`` candidates in total, of which
    ``round(n_candidates * cfg.mutation_fraction)`` are template mutations and the rest attacker-LM attacks.
    Mutations go half to previous successes (when there are any) and half to seed behaviours. Attacker
    requests are spread round-robin over the pool's categories, each showing ``cfg.seeds_per_prompt`` seeds of
    that category and up to ``cfg.success_shots`` successes (same category first). Unusable generations
    (see `parse_attack`) and verbatim copies of a shown example, a pool prompt or a success are discarded
    and re-requested, at most ``cfg.max_attacker_rounds`` rounds; a remaining shortfall is filled with raw
    seed behaviours (origin "seed") and logged.

    Args:
        generate_fn: one attacker completion per prompt, ``generate_fn(prompts) -> texts`` (see `make_generate_fn`).
        seed_rows: the *training* seed pool, rows with ``id``, ``prompt``, ``category``; nothing else is used.
        successes: previous successful attacks (strings, or rows from `successes_for_next_round`).
        cfg: red-team settings.
        rng_seed: seed of every random choice here.

    Returns:
        Attack rows (see the module docstring), attacker-LM attacks first, then mutations, then seeds.
    """
    pool = _check_pool(seed_rows)
    wins = _check_successes(successes)
    unknown = [m for m in cfg.mutations if m not in MUTATIONS]
    if unknown:
        raise ValueError(f"redteam.mutations has unknown names {unknown}; known: {sorted(MUTATIONS)}")
    rng = random.Random(rng_seed)
    n_mut = round(cfg.n_candidates * cfg.mutation_fraction) if cfg.mutations else 0
    n_lm = cfg.n_candidates - n_mut

    lm_attacks: list[dict[str, Any]] = []
    rounds = 0
    known = {normalise_text(r["prompt"]) for r in [*pool, *wins]}
    while len(lm_attacks) < n_lm and rounds < cfg.max_attacker_rounds:
        rounds += 1
        requests = _lm_requests(pool, wins, n_lm - len(lm_attacks), cfg, rng)
        texts = generate_fn([r[0] for r in requests])
        if len(texts) != len(requests):
            raise ValueError(f"generate_fn returned {len(texts)} texts for {len(requests)} prompts")
        for (prompt, cat, seed_ids), text in zip(requests, texts, strict=True):
            attack = parse_attack(text)
            shown = {normalise_text(line.removeprefix("Question: ")) for line in prompt.splitlines()}
            if attack is None or normalise_text(attack) in shown or normalise_text(attack) in known:
                continue
            lm_attacks.append(_attack(attack, cat, ORIGIN_LM, seed_ids[0], seed_ids))
        log.info("attacker round %d: %d/%d usable attacks", rounds, len(lm_attacks), n_lm)

    mutations: list[dict[str, Any]] = []
    if n_mut:
        n_from_wins = n_mut // 2 if wins else 0
        mutations += _mutations(wins, n_from_wins, list(cfg.mutations), rng, True, rng_seed)
        mutations += _mutations(pool, n_mut - n_from_wins, list(cfg.mutations), rng, False, rng_seed + n_from_wins)

    shortfall = n_lm - len(lm_attacks)
    seeds: list[dict[str, Any]] = []
    if shortfall > 0:
        fill = rng.sample(pool, min(shortfall, len(pool)))
        seeds = [_attack(r["prompt"], r["category"], ORIGIN_SEED, r["id"], [r["id"]]) for r in fill]
        log.warning(
            "attacker gave %d usable attacks of %d after %d rounds; filled %d with seed behaviours",
            len(lm_attacks),
            n_lm,
            rounds,
            len(seeds),
        )
    return lm_attacks + mutations + seeds


# --------------------------------------------------------------------------------------------------
# Dedup, diversity, selection
# --------------------------------------------------------------------------------------------------


def _default_embed(texts: list[str]) -> np.ndarray:
    from selfmoa.embeddings import embed

    return embed(texts)


def dedup_attacks(
    rows: Sequence[Mapping[str, Any]], threshold: float, embed_fn: EmbedFn = _default_embed
) -> list[dict[str, Any]]:
    """Drop exact duplicates, then greedily (in order) any attack whose cosine to a kept one exceeds `threshold`."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"dedup threshold must be in [0, 1], got {threshold}")
    seen: set[str] = set()
    unique = []
    for row in rows:
        key = normalise_text(row["prompt"])
        if key not in seen:
            seen.add(key)
            unique.append(dict(row))
    if len(unique) < 2:
        return unique
    from selfmoa.embeddings import greedy_dedup

    kept = greedy_dedup(embed_fn([r["prompt"] for r in unique]), threshold)
    log.info("dedup: %d rows -> %d unique -> %d kept (threshold %.2f)", len(rows), len(unique), len(kept), threshold)
    return [unique[i] for i in kept]


def attack_diversity(rows: Sequence[Mapping[str, Any]], embed_fn: EmbedFn = _default_embed) -> float:
    """Mean pairwise cosine distance of the attack prompts (0 for fewer than two)."""
    from selfmoa.embeddings import diversity

    if len(rows) < 2:
        return 0.0
    return diversity(embed_fn([r["prompt"] for r in rows]))


def select_for_policy(
    rows: Sequence[Mapping[str, Any]],
    safety_scores: Sequence[float | Sequence[float | None] | None],
    n: int,
    unsafe_below: float,
    seed: int,
    embed_fn: EmbedFn = _default_embed,
) -> list[dict[str, Any]]:
    """Keep `n` attacks for this policy: its failures first, then a diverse sample of the rest.

    Rule (not from the paper): an attack *succeeded* when at least one of its scored responses is unsafe
    (`selfmoa.config.is_unsafe`; unscored responses never count). Successes are kept lowest mean safety first;
    the remaining slots are filled by farthest-point sampling over the non-successful attacks (each pick
    maximises its smallest cosine distance to everything kept), starting from a random one.

    Args:
        rows: deduplicated candidate attacks.
        safety_scores: aligned with rows; a score, None (unscored) or a list of K scores per attack.
        n: attacks to keep.
        unsafe_below: the declared threshold direction: unsafe when safety < this.
        seed: seed of the random start and tie-breaks.

    Returns:
        Copies of the kept rows with ``safety`` (mean scored safety or None), ``n_scored`` and ``success``.
    """
    if len(rows) != len(safety_scores):
        raise ValueError(f"select_for_policy: {len(rows)} rows but {len(safety_scores)} safety scores")
    if n < 1:
        raise ValueError(f"select_for_policy: n must be >= 1, got {n}")
    rng = random.Random(seed)
    annotated = []
    for row, score in zip(rows, safety_scores, strict=True):
        values = scored_values(score)
        annotated.append(
            {
                **row,
                "safety": (sum(values) / len(values)) if values else None,
                "n_scored": len(values),
                "success": any(is_unsafe(v, unsafe_below) for v in values),
            }
        )
    wins = [r for r in annotated if r["success"]]
    tie = {id(r): rng.random() for r in wins}
    wins.sort(key=lambda r: (r["safety"], tie[id(r)]))
    kept = wins[:n]
    rest = [r for r in annotated if not r["success"]]
    if len(kept) < n and rest:
        kept += _farthest_point([r["prompt"] for r in kept], rest, n - len(kept), rng, embed_fn)
    return kept


def _farthest_point(
    kept_texts: list[str], rest: list[dict[str, Any]], k: int, rng: random.Random, embed_fn: EmbedFn
) -> list[dict[str, Any]]:
    if k >= len(rest):
        return list(rest)
    vecs = embed_fn(kept_texts + [r["prompt"] for r in rest])
    kept_vecs, rest_vecs = vecs[: len(kept_texts)], vecs[len(kept_texts) :]
    from selfmoa.embeddings import cosine_matrix

    chosen: list[int] = []
    if len(kept_vecs):
        min_dist = (1.0 - cosine_matrix(rest_vecs, kept_vecs)).min(axis=1)
    else:
        start = rng.randrange(len(rest))
        chosen.append(start)
        min_dist = 1.0 - cosine_matrix(rest_vecs, rest_vecs[start : start + 1])[:, 0]
    while len(chosen) < k:
        masked = min_dist.copy()
        masked[chosen] = -np.inf
        i = int(np.argmax(masked))
        chosen.append(i)
        min_dist = np.minimum(min_dist, 1.0 - cosine_matrix(rest_vecs, rest_vecs[i : i + 1])[:, 0])
    return [rest[i] for i in chosen]


def successes_for_next_round(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The attacks that succeeded (``success`` true), as rows with id, prompt, category and seed ids.

    Rows rather than bare strings so the next round can show same-category successes to the attacker and
    keep the category of mutated successes; `propose_attacks` accepts either.
    """
    return [
        {
            "id": r["id"],
            "prompt": r["prompt"],
            "category": r.get("category", ""),
            "seed_ids": list(r.get("seed_ids") or []),
        }
        for r in rows
        if r.get("success")
    ]


def summarize_attacks(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per-origin count, scored count and success rate of selected attacks (for the per-iteration curves)."""
    out: dict[str, dict[str, Any]] = {}
    for r in rows:
        slot = out.setdefault(r["origin"], {"n": 0, "n_scored": 0, "n_success": 0})
        slot["n"] += 1
        slot["n_scored"] += int(bool(r.get("n_scored")))
        slot["n_success"] += int(bool(r.get("success")))
    for slot in out.values():
        slot["success_rate"] = slot["n_success"] / slot["n_scored"] if slot["n_scored"] else float("nan")
    return out


# --------------------------------------------------------------------------------------------------
# One round, as stage 02 runs it
# --------------------------------------------------------------------------------------------------


def answer_and_judge(candidates: Sequence[Mapping[str, Any]], answer: GenerateFn, safety_judge: Any) -> list[dict]:
    """Every candidate with the policy's answer (`answer`) and its safety score (`answer_safety`, None = unscored).

    Args:
        candidates: deduplicated attack rows.
        answer: the current policy, one greedy answer per prompt (`selfmoa.policy.Responder`).
        safety_judge: the training safety ensemble.
    """
    prompts = [c["prompt"] for c in candidates]
    answers = answer(prompts)
    judged = safety_judge.score(prompts, answers)
    return [
        {**c, "answer": a, "answer_safety": None if u else float(v)}
        for c, a, v, u in zip(candidates, answers, judged.values, judged.unscored, strict=True)
    ]


def round_metrics(
    pool: Sequence[Mapping[str, Any]],
    candidates: Sequence[Mapping[str, Any]],
    kept: Sequence[Mapping[str, Any]],
    successes: Sequence[Mapping[str, Any]],
    unsafe_below: float,
    embed_fn: EmbedFn = _default_embed,
) -> dict[str, Any]:
    """Stage 02's metrics: counts, attack success rate over all candidates, diversity, per-origin summary."""
    scores = [c["answer_safety"] for c in candidates]
    return {
        "n_pool": len(pool),
        "n_candidates": len(candidates),
        "n_kept": len(kept),
        "n_successes": len(successes),
        "candidate_asr": attack_success_rate(scores, unsafe_below),
        "candidate_diversity": attack_diversity(candidates, embed_fn),
        "kept_diversity": attack_diversity(kept, embed_fn),
        "by_origin": summarize_attacks(kept),
        "unscored_fraction": sum(s is None for s in scores) / max(len(scores), 1),
    }
