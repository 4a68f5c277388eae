"""Stage 07: every model of a run answers the held-out sets and is scored (the I/O side of evaluation).

`evaluate_model` answers the held-out prompts greedily (a `Responder` with purpose 'eval') and scores the
answers with the evaluation judges, plus MiniLM similarity to reference answers; `reference_perplexity`
is a capability proxy that needs no generation. `evaluate_run` does this for the starting policy and the
policy after every iteration, one model in memory at a time, and resumes from saved records. The metrics
themselves are the pure functions of `selfmoa.evaluation`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from selfmoa import artifacts
from selfmoa.evaluation import model_summary, paired_final_vs_base, summarise_by_set
from selfmoa.judging import judge_rows
from selfmoa.paths import resolve_path

JUDGE_COLUMNS = ["configuration", "aspect", "judge", "n", "accuracy", "f1", "auroc", "unscored_fraction"]
HEADLINE_COLUMNS = ["safety", "safety_ci", "over_refusal", "over_refusal_ci", "helpfulness", "helpfulness_ci"]
HEADLINE_COLUMNS += ["reference_similarity", "reference_perplexity", "off_topic_refusal", "refusal_topicality"]


def set_sizes(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Number of held-out prompts per set (largest first)."""
    import pandas as pd

    return pd.Series([r["prompt_set"] for r in rows]).value_counts().to_dict()


def model_names(cfg: Any) -> list[str]:
    """`base` (the policy before the loop, after any reset) and `iter<k>` (after k iterations)."""
    return ["base"] + [f"iter{t + 1}" for t in range(cfg.iterations)]


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
    """Perplexity of reference answers given their prompts (chat template; answer tokens only, first 128).

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


def evaluate_model(
    model: Any,
    tok: Any,
    rows: Sequence[dict[str, Any]],
    cfg: Any,
    judges: tuple[Any, Any],
    seed: int,
    cache: bool = True,
) -> list[dict[str, Any]]:
    """Greedy answers to every held-out row, scored by `judges`, with reference similarity on benign rows and
    `topicality` (MiniLM cosine between prompt and answer; the input of the off-topic refusal metric) on every row.

    Args:
        model, tok: the model to evaluate.
        rows: held-out rows (`selfmoa.data.eval_rows`).
        cfg: the run config (answer length and batch size from `eval`).
        judges: (safety, helpfulness) evaluation ensembles.
        seed: generation seed.
        cache: use the generation cache.
    """
    from selfmoa.policy import Responder

    outs = Responder.from_config(cfg, model, tok, "eval", seed, cache).respond([r["prompt"] for r in rows])
    keys = ("id", "prompt", "prompt_set", "is_harmful")
    answered = [
        {**{k: r[k] for k in keys}, "reference": r.get("reference"), "response": o[0]}
        for r, o in zip(rows, outs, strict=True)
    ]
    records = judge_rows(answered, judges)
    refs = [None if r["is_harmful"] else r.get("reference") for r in records]
    sims = reference_similarity([r["response"] for r in records], refs)
    from selfmoa.embeddings import paired_similarity

    topical = paired_similarity([r["prompt"] for r in records], [r["response"] for r in records])
    return [{**r, "reference_similarity": s, "topicality": t} for r, s, t in zip(records, sims, topical, strict=True)]


def selected_models(cfg: Any, wanted: Sequence[str] = ()) -> list[str]:
    """The run's models (`model_names`) named in `wanted` ('base', 'final' = the last one, 'iter<k>'), in run
    order; every model when `wanted` is empty."""
    names = model_names(cfg)
    if not wanted:
        return names
    chosen = {names[-1] if w == "final" else w for w in wanted}
    return [n for n in names if n in chosen]


def _each_model(
    ctx: Any, label: str, path_of: Any, compute: Any, read: Any, write: Any, wanted: Sequence[str] = ()
) -> dict[str, Any]:
    """`compute(model, tok, name)` for every model of the run named in `wanted` (`selected_models`; all when
    empty), one in memory at a time, or `read(path)` where a complete stage saved it; each result is written
    with `write(path, result)` as it finishes and timed as `<label>_<model>`."""
    from selfmoa import policy
    from selfmoa.models import release_memory

    out = {}
    chosen = selected_models(ctx.cfg, wanted)
    for k, name in enumerate(model_names(ctx.cfg)):
        if name not in chosen:
            continue
        path = path_of(name)
        if ctx.complete and path.is_file():
            out[name] = read(path)
            continue
        t0 = time.time()
        model, tok = policy.load_policy(ctx.cfg, ctx.run, k)
        out[name] = compute(model, tok, name)
        write(path, out[name])
        ctx.timed(f"{label}_{name}", time.time() - t0)
        del model
        release_memory()  # one policy at a time: give the last one's memory back before the next loads
    return out


def evaluate_run(ctx: Any, rows: Sequence[dict[str, Any]], judges: tuple[Any, Any]) -> dict[str, list[dict[str, Any]]]:
    """Records of every model of the run (`model_names`), evaluated one at a time, or loaded when saved.

    Writes `records_<model>.jsonl` and `perplexity_<model>.json` into the stage folder as each model finishes.
    """

    def compute(model: Any, tok: Any, name: str) -> list[dict[str, Any]]:
        answered = evaluate_model(model, tok, rows, ctx.cfg, judges, ctx.seed)
        ppl = benign_reference_perplexity(model, tok, rows)
        artifacts.write_json(ctx.path(f"perplexity_{name}.json"), {"reference_perplexity": ppl})
        return [{**r, "model": name} for r in answered]

    return _each_model(
        ctx, "evaluate", lambda n: ctx.path(f"records_{n}.jsonl"), compute, artifacts.read_jsonl, artifacts.write_jsonl
    )


def capability_run(ctx: Any) -> dict[str, dict[str, Any]]:
    """lm-eval capability of the run's models named in `capability.models` (all when empty;
    `selfmoa.capability.evaluate_capability`, per-item scores kept for paired and seed-level intervals), one model
    in memory at a time; {} when `capability.enabled` is false.

    Writes `capability_<model>.json` into the stage folder as each model finishes; a complete stage loads them.
    """
    from selfmoa.capability import evaluate_capability
    from selfmoa.paths import resolve_path

    if not ctx.cfg.capability.enabled:
        return {}
    cache = resolve_path(ctx.cfg.cache_dir)
    return _each_model(
        ctx,
        "capability",
        lambda n: ctx.path(f"capability_{n}.json"),
        lambda model, tok, name: evaluate_capability(model, tok, ctx.cfg.capability, cache, items=True),
        artifacts.read_json,
        artifacts.write_json,
        ctx.cfg.capability.models,
    )


def capability_frame(results: dict[str, dict[str, Any]]) -> Any:
    """`capability_run`'s results as a table of each task's primary metric per model, with lm-eval's stderr."""
    from selfmoa.capability import capability_table

    return capability_table(results, primary_only=True)


def summaries(ctx: Any, records: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """`model_summary` of every model, with its saved reference perplexity."""
    cfg = ctx.cfg
    out = {}
    for name, recs in records.items():
        out[name] = model_summary(recs, cfg.judge.unsafe_below, cfg.eval.n_bootstrap, ctx.seed)
        out[name]["reference_perplexity"] = artifacts.read_json(ctx.path(f"perplexity_{name}.json"))[
            "reference_perplexity"
        ]
    return out


def by_set(records: dict[str, list[dict[str, Any]]], cfg: Any, seed: int) -> Any:
    """`summarise_by_set` of every model, one long table with a `model` column."""
    import pandas as pd

    frames = [
        summarise_by_set(recs, cfg.judge.unsafe_below, cfg.eval.n_bootstrap, seed).assign(model=name)
        for name, recs in records.items()
    ]
    return pd.concat(frames)


def headline_frame(summary: dict[str, dict[str, Any]]) -> Any:
    """The headline metrics of every model as a table (one row per model)."""
    import pandas as pd

    return pd.DataFrame(summary).T[HEADLINE_COLUMNS]


def final_vs_base(records: dict[str, list[dict[str, Any]]], cfg: Any, seed: int) -> dict[str, dict[str, Any]]:
    """Paired tests of the last model against `base` on the same prompts (`paired_final_vs_base`)."""
    final = list(records)[-1]
    return paired_final_vs_base(records["base"], records[final], cfg.judge.unsafe_below, cfg.eval.n_bootstrap, seed)


def judge_validation_key(cfg: Any) -> str:
    """What the judge validation table depends on: the judge settings, the reference subsample (size, and
    `eval.sample_seed` when it subsamples: never the training seed) and the code of the judges and of the reference
    data (a code change is a cache miss)."""
    from selfmoa import config as C

    package = Path(__file__).parent
    sources = sorted((package / "judges").glob("*.py")) + [package / "data.py"]
    n = cfg.eval.n_judge_validation
    return C.config_hash(
        {
            "judge": C.key_dict(cfg.judge),
            "n_judge_validation": n,
            "seed": cfg.eval.sample_seed if n else None,
            "code": {p.name: artifacts.file_hash(p) for p in sources},
        }
    )


def judge_table(ctx: Any, lm: tuple[Any, Any] | None) -> Any:
    """Judge validation of the run's judges (`validate_judges`), saved as `judges.csv` or loaded from it.

    The table is also kept in the cache folder under `judge_validation_key`, so the seeds of a study (and reruns)
    with the same judges compute it once.
    """
    import io

    import pandas as pd

    from selfmoa.judges.validation import validate_judges

    path = ctx.path("judges.csv")
    if ctx.complete and path.is_file():
        return pd.read_csv(path)
    cached = resolve_path(ctx.cfg.cache_dir) / "judge_validation" / f"{judge_validation_key(ctx.cfg)}.csv"
    if not cached.is_file():
        buffer = io.StringIO()
        validate_judges(ctx.cfg, lm).to_csv(buffer, index=False)
        artifacts.atomic_write_bytes(cached, buffer.getvalue().encode())
    artifacts.atomic_write_bytes(path, cached.read_bytes())
    return pd.read_csv(path)


def loop_rows(ctx: Any, summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per iteration: red-team success (candidates; all K samples of the kept attacks), the over-refusal
    attack success rate (contrast candidates the policy refused; None for runs without contrast prompts),
    diversity, attacks, pairs by source, training time, and the held-out metrics of the policy after the round."""
    rows = []
    for t in range(ctx.cfg.iterations):
        red, jud, par, ali = (
            artifacts.read_json(ctx.upstream_dir(stage, t) / "metrics.json")
            for stage in ("02_redteam", "04_judge", "05_pairs", "06_align")
        )
        rows.append(
            {
                "iteration": t,
                "redteam_candidate_asr": red["candidate_asr"],
                "redteam_asr": jud["attack_success_rate"],
                "redteam_over_refusal_asr": red.get("contrast_asr"),
                "n_contrast": red.get("n_contrast_kept", 0),
                "attack_diversity": red["kept_diversity"],
                "n_attacks": red["n_kept"],
                "n_pairs": par["n_pairs"],
                "pairs_by_source": par["sources"],
                "train_seconds": ali["seconds"],
                "heldout_after": summary[f"iter{t + 1}"],
            }
        )
    return rows


def loop_frame(rows: Sequence[dict[str, Any]]) -> Any:
    """`loop_rows` as a table, with the held-out safety after each round in place of the nested metrics."""
    import pandas as pd

    flat = [
        {k: v for k, v in r.items() if k != "heldout_after"} | {"heldout_safety": r["heldout_after"]["safety"]}
        for r in rows
    ]
    return pd.DataFrame(flat)


def documents(
    cfg: Any,
    sizes: dict[str, int],
    summary: dict[str, dict[str, Any]],
    paired: dict[str, Any],
    loops: list[dict[str, Any]],
    records: dict[str, list[dict[str, Any]]],
) -> dict[str, dict[str, Any]]:
    """The stage's result documents: `summary.json` (every model, paired tests, judges), `loop.json` and `base.json`."""
    head = {"profile": cfg.profile, "policy": cfg.policy.name}
    judges = {"safety": records["base"][0]["safety_judge"], "helpfulness": records["base"][0]["helpfulness_judge"]}
    result = head | {"eval_sets": sizes, "models": summary, "paired_final_vs_base": paired, "judges": judges}
    return {
        "summary.json": result,
        "loop.json": head | {"iterations": loops, "base": summary["base"]},
        "base.json": head | {"eval_sets": sizes, "judges": judges, **summary["base"]},
    }


def save(ctx: Any, docs: dict[str, dict[str, Any]], by_set_table: Any) -> None:
    """Write the stage's outputs and finish it (metrics: safety and over-refusal of the final and base models)."""
    cfg = ctx.cfg
    by_set_table.to_csv(ctx.path("by_set.csv"), index=False)
    artifacts.write_json(ctx.path("summary.json"), docs["summary.json"])
    artifacts.write_json(ctx.path("loop.json"), docs["loop.json"])
    ctx.models = {
        "policy": cfg.policy.name,
        "eval_safety": cfg.judge.eval_safety,
        "eval_helpfulness": cfg.judge.eval_helpfulness,
    }
    models = docs["summary.json"]["models"]
    final, base = models[list(models)[-1]], models["base"]
    metrics = {
        f"{m}_{which}": model[m]
        for m in ("safety", "over_refusal")
        for which, model in (("final", final), ("base", base))
    }
    ctx.finish(metrics)


def published(docs: dict[str, dict[str, Any]], by_set_table: Any, judges: Any) -> dict[str, Any]:
    """What stage 07 publishes to `data/results/<profile>/` (see `selfmoa.publish.publish`)."""
    return {
        "base.json": docs["base.json"],
        "eval.json": docs["summary.json"],
        "loop.json": docs["loop.json"],
        "eval_by_set.csv": by_set_table,
        "judges.csv": judges,
    }
