"""Baselines and sweeps of the study (stage 07b). Every design choice here is this project's, not the paper's.

Each variant is **one training round from the run's starting policy** (the policy at iteration 0, after any
safety reset) with the loop's settings changed in one factor, evaluated on the loop's held-out sets with the
evaluation judges. Round 1 of the loop is the shared reference point of the Self-MOA groups, so it is not
retrained: it is the weight setting (train.w_safety, train.w_helpful), the full round-0 pair set, and
label noise 0.

| group | name | training pairs | changed |
|---|---|---|---|
| static | static_dpo_n<N> | N curated pairs (`pairs.curated_pairs`), harmful/benign shares kept | data source |
| data | selfmoa_n<N> | N of the loop's round-0 pairs | pair count |
| weights | ws<w_s>_wh<w_h> | the loop's round-0 pairs | loss weights |
| objective | safety_only, helpfulness_only | round-0 judged samples re-paired by one score alone | ordering, w_s = 0 |
| noise | noise<p> | round-0 judged samples, a fraction p of training safety decisions flipped, re-paired | judge quality |

Safety-only is the loss with w_h -> 0: pairs ordered by safety, plain DPO (the safety margin term is off,
since safety already orders the pairs). Helpfulness-only is w_s = 0 with pairs ordered by helpfulness alone.
Re-paired variants reuse the loop's round-0 self-revisions; a prompt that needs one and has none gets the
configured fallback.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from selfmoa import config as C

GROUPS = ("static", "data", "weights", "objective", "noise")
DATA_SOURCES = ("static", "loop_pairs", "repaired")


@dataclass(frozen=True)
class Variant:
    """One baseline or sweep point: where its pairs come from and which config keys it changes."""

    name: str
    group: str
    data: str
    overrides: dict[str, Any] = field(default_factory=dict)
    n_pairs: int | None = None

    def __post_init__(self) -> None:
        if self.group not in GROUPS:
            raise ValueError(f"variant {self.name}: group {self.group!r} is not one of {list(GROUPS)}")
        if self.data not in DATA_SOURCES:
            raise ValueError(f"variant {self.name}: data {self.data!r} is not one of {list(DATA_SOURCES)}")


def _num(x: float) -> str:
    return f"{x:g}"


def plan(cfg: C.RunConfig) -> list[Variant]:
    """The variants a config asks for (none when `study.enabled` is false; static only without a loop)."""
    st, tr = cfg.study, cfg.train
    if not st.enabled:
        return []
    out = [Variant(f"static_dpo_n{n}", "static", "static", n_pairs=n) for n in sorted(set(st.static_sizes))]
    if cfg.iterations == 0:
        return out
    out += [Variant(f"selfmoa_n{n}", "data", "loop_pairs", n_pairs=n) for n in sorted(set(st.selfmoa_sizes))]
    weights = [(ws, tr.w_helpful) for ws in st.weight_sweep] + [(tr.w_safety, wh) for wh in st.helpful_sweep]
    for ws, wh in dict.fromkeys(weights):
        if (ws, wh) != (tr.w_safety, tr.w_helpful):
            out.append(
                Variant(
                    f"ws{_num(ws)}_wh{_num(wh)}", "weights", "loop_pairs", {"train.w_safety": ws, "train.w_helpful": wh}
                )
            )
    if st.objective_ablations:
        out += [
            Variant("safety_only", "objective", "repaired", {"pairs.order": "safety", "train.w_safety": 0.0}),
            Variant("helpfulness_only", "objective", "repaired", {"pairs.order": "helpfulness", "train.w_safety": 0.0}),
        ]
    out += [
        Variant(f"noise{_num(p)}", "noise", "repaired", {"judge.label_noise": p})
        for p in sorted(set(st.label_noise))
        if p > 0
    ]
    return out


def variant_config(cfg: C.RunConfig, variant: Variant) -> C.RunConfig:
    """The run config with the variant's overrides applied (validated)."""
    return C.with_overrides(cfg, variant.overrides)


def variant_pairs(
    variant: Variant,
    cfg: C.RunConfig,
    *,
    curated: Sequence[dict[str, Any]] = (),
    loop_pairs: Sequence[dict[str, Any]] = (),
    judged: Sequence[dict[str, Any]] = (),
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The training pairs of a variant (see the module docstring); `cfg` is the variant's own config.

    Args:
        variant: the variant.
        cfg: `variant_config(run_cfg, variant)`.
        curated: `selfmoa.data.static_curated_pairs()` rows (static variants).
        loop_pairs: the loop's round-0 pairs (`iter0/05_pairs/pairs.jsonl`).
        judged: the loop's round-0 judged samples (`iter0/04_judge/judged.jsonl`).
        seed: seed of subsampling, label noise and refusal wording.
    """
    from selfmoa.pairs import build_pairs_for, curated_pairs, pair_inputs, revisions_from_pairs, subsample_pairs

    if variant.data == "static":
        pairs = curated_pairs(curated, seed)
    elif variant.data == "loop_pairs":
        pairs = list(loop_pairs)
    else:
        rows = pair_inputs(judged, cfg.judge.label_noise, seed, cfg.pairs.benign_refusal_foil)
        pairs = build_pairs_for(cfg, rows, revisions_from_pairs(loop_pairs), seed).pairs
    if not pairs:
        raise ValueError(f"variant {variant.name}: no training pair (check its inputs and pair settings)")
    return subsample_pairs(pairs, variant.n_pairs, seed) if variant.n_pairs else pairs


def source_counts(pairs: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Pairs per (prompt kind, chosen source), e.g. {'harmful/template': 12, 'benign/sampled': 30}."""
    out: dict[str, int] = {}
    for p in pairs:
        key = f"{p['prompt_kind']}/{p['source']}"
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def pairs_to_reach(curve: Sequence[tuple[int, float]], target: float) -> float | None:
    """Fewest pairs at which a safety-vs-pairs curve reaches `target`, interpolated linearly; None if never.

    `curve` holds (n_pairs, safety) points; they are sorted by n_pairs. A curve that starts at or above the
    target returns its first size (the curve says nothing about fewer pairs).
    """
    pts = sorted(curve)
    for i, (n, s) in enumerate(pts):
        if s >= target:
            if i == 0:
                return float(n)
            n0, s0 = pts[i - 1]
            return float(n0 + (n - n0) * (target - s0) / (s - s0))
    return None


def pairs_ratio(
    static_curve: Sequence[tuple[int, float]], selfmoa_curve: Sequence[tuple[int, float]]
) -> dict[str, Any]:
    """How many more pairs the static baseline needs than Self-MOA to reach Self-MOA's best safety.

    The paper's "up to 11x less data". Returns ratio (None when the static baseline never reaches the
    target within its sizes; then `lower_bound` = largest static size / Self-MOA's pairs), the target
    safety, and the pairs each side needs.
    """
    if not static_curve or not selfmoa_curve:
        return {"ratio": None, "note": "needs both a static and a Self-MOA curve"}
    target = max(s for _, s in selfmoa_curve)
    n_self = pairs_to_reach(selfmoa_curve, target)
    n_static = pairs_to_reach(static_curve, target)
    out: dict[str, Any] = {"target_safety": target, "selfmoa_pairs": n_self, "static_pairs": n_static}
    if n_static is None:
        largest = max(n for n, _ in static_curve)
        out.update(
            ratio=None,
            lower_bound=largest / n_self if n_self else None,
            note=f"the static baseline never reached safety {target:.3f} within {largest} pairs",
        )
    else:
        out.update(ratio=n_static / n_self if n_self else math.nan, note="linear interpolation between sizes")
    return out


def run_variant(
    ctx: Any,
    variant: Variant,
    pairs: Sequence[dict[str, Any]],
    rows: Sequence[dict[str, Any]],
    judges: tuple[Any, Any],
    cache: Any = None,
) -> dict[str, Any]:
    """Train a variant's LoRA adapter from the starting policy, evaluate it; resumable variant by variant.

    The adapter, per-sample records and `result.json` go to `<stage>/<variant name>/`. A variant whose
    `result.json` carries the same key (variant, config sections, upstream stages, pairs) is loaded, not
    recomputed, so an interrupted stage loses no finished variant. Training uses the seed of the loop's
    round-1 training and evaluation the seed of `07_evaluate`, so the variant differs from round 1 of the
    loop only in its own factor.

    Args:
        ctx: the open `07b_variants` stage (`selfmoa.artifacts.StageContext`).
        variant: the variant.
        pairs: its training pairs (`variant_pairs`).
        rows: held-out evaluation rows (`selfmoa.data.eval_rows`).
        judges: (safety, helpfulness) evaluation judges.
        cache: generation cache (or None: answer without it).

    Returns:
        dict with name, group, overrides, n_pairs, sources, train (`selfmoa.training.stage_metrics`), metrics
        (`selfmoa.evaluation.model_summary` plus reference_perplexity) and seconds.
    """
    import dataclasses
    import time

    from selfmoa import artifacts, heldout, policy, stages, training
    from selfmoa.evaluation import model_summary
    from selfmoa.models import release_memory
    from selfmoa.seeding import derive_seed

    cfg = variant_config(ctx.cfg, variant)
    folder = ctx.path(variant.name)
    done = folder / "result.json"
    key = C.config_hash(
        {
            "variant": dataclasses.asdict(variant),
            "config": stages.stage_sections(cfg, ctx.stage),
            "upstream": ctx.upstream,
            "pairs": [[p["prompt"], p["chosen"], p["rejected"], p["safety_margin"]] for p in pairs],
        }
    )
    if done.is_file() and artifacts.read_json(done).get("key") == key:
        return artifacts.read_json(done)
    t0 = time.time()
    model, tok = policy.load_policy(cfg, ctx.run, 0)
    trained = training.train_preference(
        model, tok, pairs, cfg.train, folder / policy.ADAPTER_DIR, seed=derive_seed(cfg.seed, "06_align", 0)
    )
    train = training.stage_metrics(trained)
    del model, trained
    release_memory()
    model, tok = policy.load_policy(cfg, ctx.run, 0, extra_adapters=[folder / policy.ADAPTER_DIR])
    eval_seed = derive_seed(cfg.seed, "07_evaluate", 0)
    records = heldout.evaluate_model(model, tok, rows, cfg, judges, eval_seed, cache=cache is not None)
    artifacts.write_jsonl(folder / "records.jsonl", [{**r, "model": variant.name} for r in records])
    metrics = model_summary(records, cfg.judge.unsafe_below, cfg.eval.n_bootstrap, eval_seed)
    metrics["reference_perplexity"] = heldout.benign_reference_perplexity(model, tok, rows)
    result = {
        "key": key,
        "name": variant.name,
        "group": variant.group,
        "data": variant.data,
        "overrides": variant.overrides,
        "w_safety": cfg.train.w_safety,
        "w_helpful": cfg.train.w_helpful,
        "label_noise": cfg.judge.label_noise,
        "pairs_order": cfg.pairs.order,
        "n_pairs": len(pairs),
        "sources": source_counts(pairs),
        "train": train,
        "metrics": metrics,
        "seconds": round(time.time() - t0, 1),
    }
    artifacts.write_json(done, result)
    del model
    release_memory()  # each variant loads fresh weights; free the last ones before the next
    return result


def plan_frame(variants: Sequence[Variant]) -> Any:
    """The plan as a table: name, group, data, n_pairs, overrides."""
    import pandas as pd

    keys = ("name", "group", "data", "n_pairs", "overrides")
    return pd.DataFrame([{k: getattr(v, k) for k in keys} for v in variants])


def results_frame(results: Sequence[dict[str, Any]]) -> Any:
    """`run_variant` results as a table: pairs, held-out safety, over-refusal, helpfulness, seconds."""
    import pandas as pd

    metrics = ("safety", "over_refusal", "helpfulness")
    return pd.DataFrame(
        [
            {"name": r["name"], "group": r["group"], "n_pairs": r["n_pairs"]}
            | {m: r["metrics"][m] for m in metrics}
            | {"train_s": r["train"]["seconds"], "total_s": r["seconds"]}
            for r in results
        ]
    )


def reference_points(cfg: C.RunConfig, evaluated: dict[str, Any], n_round0_pairs: int) -> dict[str, dict[str, Any]]:
    """`base` and `selfmoa_round1` (one round of the loop) from `07_evaluate`'s models, with their pair counts."""
    round1 = {"n_pairs": n_round0_pairs, "w_safety": cfg.train.w_safety, "w_helpful": cfg.train.w_helpful}
    return {
        "base": {**evaluated["base"], "n_pairs": 0},
        "selfmoa_round1": {**evaluated["iter1"], **round1, "label_noise": 0.0},
    }


def document(cfg: C.RunConfig, reference: dict[str, Any], results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """`variants.json`: the reference points and every variant's result (without its resume key)."""
    rows = [{k: v for k, v in r.items() if k != "key"} for r in results]
    return {"profile": cfg.profile, "policy": cfg.policy.name, "reference": reference, "variants": rows}
