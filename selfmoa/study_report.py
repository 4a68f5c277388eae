"""Studies over several training seeds: per-seed values, means with seed-and-prompt intervals, per-set summaries,
paired gains, capability tables, read from the saved seed runs (pure functions; used by 08_report).

Every number here is a mean over training seeds with a 95% interval that includes seed variance
(`selfmoa.seeds`: seeds resampled, then prompts within each seed); with one seed it is the ordinary prompt
bootstrap. Gains are paired within a seed: the final model and that seed's starting model answered the same
prompts, and the per-prompt differences are resampled together. Single-run shaping is in `selfmoa.report`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from selfmoa.report import (
    loop_frame,
    loop_markdown,
    loop_models,
    markdown_table,
    variant_models,
)

ALL_SETS = "all"  # every held-out prompt of a kind, pooled (the headline)
ITEM_METRICS = ("safety", "attack_success_rate", "harmful_refusal", "over_refusal", "helpfulness")
# refusals of harmful prompts whose MiniLM cosine prompt/response is below `OFF_TOPIC_BELOW` (a share of refusals,
# not of prompts; `selfmoa.evaluation`); reported beside the headline, not in `models`
OFF_TOPIC = "off_topic_refusal"
LOOP_WEIGHTS = "loop_weights"  # 07b group (and summary.json section) of the loop rerun at other w_s (`loop_ws<w>`)
BENIGN_METRICS = ("over_refusal", "helpfulness")
SET_METRICS = {"harmful": ("safety",), "benign": ("over_refusal", "helpfulness")}  # per-set reporting
# headline changes of a model against `base`: (name in summary.json, metric, scale)
GAINS = (
    ("safety_gain_points", "safety", 100.0),
    ("over_refusal_change_points", "over_refusal", 100.0),
    ("helpfulness_change", "helpfulness", 1.0),
)


def _finite(x: Any) -> Any:
    """NaN -> None, recursively (JSON has no NaN); dict keys become strings."""
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    if isinstance(x, float) and x != x:
        return None
    return x


def item_values(records: Sequence[dict[str, Any]], unsafe_below: float) -> dict[tuple[str, str], dict[str, float]]:
    """Per-prompt values of one model: (prompt set or 'all', metric) -> {item key: value}.

    Item keys are `<prompt_set>:<id>`; unscored and not-applicable items are left out (never counted as 0).
    Metrics: safety (1 - unsafe) and attack_success_rate (unsafe) and harmful_refusal on harmful prompts,
    over_refusal and helpfulness on benign prompts, and off_topic_refusal (1 = off topic) on the refusals of
    harmful prompts that have a `topicality` (`selfmoa.evaluation.per_sample_flags`).
    """
    import math

    from selfmoa.evaluation import per_sample_flags

    flags = per_sample_flags(records, unsafe_below)
    columns = {
        "attack_success_rate": flags["unsafe"],
        "safety": 1.0 - flags["unsafe"],
        "harmful_refusal": flags["harmful_refusal"],
        "over_refusal": flags["over_refusal"],
        "helpfulness": flags["helpfulness"],
        OFF_TOPIC: flags[OFF_TOPIC],
    }
    out: dict[tuple[str, str], dict[str, float]] = {}
    for i, r in enumerate(records):
        key = f"{r['prompt_set']}:{r['id']}"
        for metric, values in columns.items():
            v = float(values[i])
            if math.isnan(v):
                continue
            for where in (str(r["prompt_set"]), ALL_SETS):
                out.setdefault((where, metric), {})[key] = v
    return out


def set_kinds(records: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Prompt set -> 'harmful' or 'benign' (from the records' `is_harmful`), sorted by kind then name."""
    kinds = {str(r["prompt_set"]): "harmful" if r["is_harmful"] else "benign" for r in records}
    return dict(sorted(kinds.items(), key=lambda kv: (kv[1] != "harmful", kv[0])))


def seed_model_values(
    runs: Sequence[dict[str, Any]], unsafe_below: float
) -> dict[str, dict[int, dict[tuple[str, str], dict[str, float]]]]:
    """model -> seed -> `item_values`, over the runs' per-sample records (`load_seed_run`'s `records`)."""
    out: dict[str, dict[int, dict[tuple[str, str], dict[str, float]]]] = {}
    for run in runs:
        for model, recs in run["records"].items():
            out.setdefault(model, {})[int(run["seed"])] = item_values(recs, unsafe_below)
    return out


def metric_summary(
    by_seed: dict[int, dict[tuple[str, str], dict[str, float]]], where: str, metric: str, n_boot: int, seed: int = 0
) -> dict[str, Any]:
    """`selfmoa.seeds.seed_summary` of one model's metric on one set (or 'all') over its seeds."""
    from selfmoa.seeds import seed_summary

    values = {s: list(v.get((where, metric), {}).values()) for s, v in by_seed.items()}
    return seed_summary({s: v for s, v in values.items() if v}, n_boot=n_boot, seed=seed)


def gain_summary(
    final: dict[int, dict[tuple[str, str], dict[str, float]]],
    start: dict[int, dict[tuple[str, str], dict[str, float]]],
    where: str,
    metric: str,
    n_boot: int,
    scale: float = 1.0,
    seed: int = 0,
) -> dict[str, Any]:
    """`selfmoa.seeds.paired_gain_summary` of final - start on one set, scaled (100 = percentage points)."""
    from selfmoa.seeds import paired_gain_summary

    s = paired_gain_summary(
        {k: v.get((where, metric), {}) for k, v in final.items()},
        {k: v.get((where, metric), {}) for k, v in start.items()},
        n_boot=n_boot,
        seed=seed,
    )
    for key in ("mean", "seed_sd", "min", "max"):
        s[key] = s[key] * scale
    s["ci"] = [c * scale for c in s["ci"]]
    s["per_seed"] = {k: v * scale for k, v in s["per_seed"].items()}
    return s


def cross_seed_models(
    values: dict[str, dict[int, dict[tuple[str, str], dict[str, float]]]],
    n_pairs: dict[str, dict[int, int]],
    n_boot: int,
) -> dict[str, dict[str, Any]]:
    """Headline summary of every model (the `summary.json` `models` shape): each metric's mean over seeds on
    all held-out prompts with its seed-and-prompt CI, plus the per-seed values, seeds and mean pairs."""
    out: dict[str, dict[str, Any]] = {}
    for model, by_seed in values.items():
        m: dict[str, Any] = {"per_seed": {}, "seeds": sorted(by_seed)}
        for metric in ITEM_METRICS:
            s = metric_summary(by_seed, ALL_SETS, metric, n_boot)
            m[metric], m[f"{metric}_ci"] = s["mean"], s["ci"]
            m["per_seed"][metric] = s["per_seed"]
        m["n_seeds"] = len(by_seed)
        pairs = [n for n in n_pairs.get(model, {}).values() if n is not None]
        m["n_pairs"] = round(sum(pairs) / len(pairs)) if pairs else None
        out[model] = m
    return out


def per_set_summary(
    values: dict[str, dict[int, dict[tuple[str, str], dict[str, float]]]],
    kinds: dict[str, str],
    n_boot: int,
    reference: str = "base",
) -> dict[str, dict[str, Any]]:
    """`summary.json` `per_set`: per held-out set, its kind, and per metric of that kind (harmful: safety;
    benign: over-refusal and helpfulness) every model's mean over seeds, seed-level CI and per-seed values,
    and every model's paired change against `reference` (points for rates, score units for helpfulness)."""
    scale = {metric: sc for _, metric, sc in GAINS}
    out: dict[str, dict[str, Any]] = {}
    for where, kind in kinds.items():
        entry: dict[str, Any] = {"kind": kind}
        for metric in SET_METRICS[kind]:
            models = {m: metric_summary(v, where, metric, n_boot) for m, v in values.items()}
            change = {
                m: gain_summary(v, values[reference], where, metric, n_boot, scale[metric])
                for m, v in values.items()
                if m != reference and reference in values
            }
            entry[metric] = {"models": models, "change_vs_" + reference: change}
        entry["n_items"] = max((len(v.get((where, SET_METRICS[kind][0]), {})) for b in values.values()
                                for v in b.values()), default=0)  # fmt: skip
        out[where] = entry
    return out


def headline_gains(
    values: dict[str, dict[int, dict[tuple[str, str], dict[str, float]]]],
    n_boot: int,
    final: str = "selfmoa",
    reference: str = "base",
) -> dict[str, dict[str, Any]]:
    """The headline changes of `final` against `reference` on all held-out prompts: the mean over seeds of
    per-seed paired gains, with `paired_gain_summary`'s interval (`GAINS` names and scales)."""
    if final not in values or reference not in values:
        return {}
    return {
        name: gain_summary(values[final], values[reference], ALL_SETS, metric, n_boot, scale)
        for name, metric, scale in GAINS
    }


def per_seed_table(
    values: dict[str, dict[int, dict[tuple[str, str], dict[str, float]]]], kinds: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """`summary.json` `per_seed`: seed -> model -> safety, over-refusal, helpfulness, off-topic refusal (all
    prompts; None without topicality) and per set."""
    import numpy as np

    def mean(v: dict[str, float]) -> float | None:
        return float(np.mean(list(v.values()))) if v else None

    out: dict[str, dict[str, Any]] = {}
    for model, by_seed in values.items():
        for seed, vals in by_seed.items():
            row: dict[str, Any] = {
                m: mean(vals.get((ALL_SETS, m), {})) for m in ("safety", "over_refusal", "helpfulness", OFF_TOPIC)
            }
            row["per_set"] = {
                where: {m: mean(vals.get((where, m), {})) for m in SET_METRICS[kind]} for where, kind in kinds.items()
            }
            out.setdefault(str(seed), {})[model] = row
    return dict(sorted(out.items(), key=lambda kv: int(kv[0])))


def off_topic_summary(
    values: dict[str, dict[int, dict[tuple[str, str], dict[str, float]]]], n_boot: int
) -> dict[str, dict[str, Any]]:
    """`summary.json` `off_topic_refusal`: per model, the share of its refusals of harmful held-out prompts that
    are off topic (all sets pooled), as the mean over seeds of each seed's share with the seed-and-prompt CI,
    the per-seed shares and the refusals each share is over (`n_refusals`). Models without topicality in any
    seed are left out.

    The denominator is the model's own refusals, so two models' shares are over different prompts: read them
    with `n_refusals` (a model that rarely refuses has a share over few refusals).
    """
    out: dict[str, dict[str, Any]] = {}
    for model, by_seed in values.items():
        s = metric_summary(by_seed, ALL_SETS, OFF_TOPIC, n_boot)
        if not s["n_seeds"]:
            continue
        n = {seed: len(v.get((ALL_SETS, OFF_TOPIC), {})) for seed, v in sorted(by_seed.items())}
        out[model] = {k: s[k] for k in ("mean", "ci", "per_seed", "n_seeds")} | {
            "n_refusals": {seed: k for seed, k in n.items() if k}
        }
    return out


def loop_weight_summary(
    runs: Sequence[dict[str, Any]],
    main: dict[int, dict[tuple[str, str], dict[str, float]]],
    unsafe_below: float,
    n_boot: int,
) -> list[dict[str, Any]]:
    """Does the safety-margin weight matter once the loop iterates? One row per whole-loop variant `loop_ws<w>`
    (the seed runs' `loop_weights`), sorted by w_s, on the seeds that trained it: each metric of the variant and
    of the main run (`main`: the final policy's `item_values` by seed) on those same seeds, as means over seeds
    [seed-and-prompt CI] with per-seed values, and the paired change main - variant (safety and over-refusal in
    points, helpfulness in score units). [] when no seed run trained a weight variant.
    """
    by_name: dict[str, dict[int, Any]] = {}
    weights: dict[str, Any] = {}
    for run in runs:
        for name, v in run.get(LOOP_WEIGHTS, {}).items():
            by_name.setdefault(name, {})[int(run["seed"])] = item_values(v["records"], unsafe_below)
            weights[name] = v["w_safety"]
    rows = []
    for name in sorted(by_name, key=weights.__getitem__):
        variant = {s: v for s, v in by_name[name].items() if s in main}
        ref = {s: main[s] for s in variant}
        row: dict[str, Any] = {"name": name, "w_safety": weights[name], "seeds": sorted(variant)}
        for _, metric, scale in GAINS:
            for key, vals in (("variant", variant), ("main", ref)):
                s = metric_summary(vals, ALL_SETS, metric, n_boot)
                row.setdefault(key, {})[metric] = {k: s[k] for k in ("mean", "ci", "per_seed")}
            g = gain_summary(ref, variant, ALL_SETS, metric, n_boot, scale)
            row.setdefault("main_minus_variant", {})[metric] = {k: g[k] for k in ("mean", "ci", "per_seed")}
        rows.append(row)
    return rows


def loop_weight_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table of `loop_weight_summary`: per variant, the variant and the main run (w_s = train.w_safety)
    on the variant's seeds, and their paired change, each cell 'mean [95% CI] (seed: value, ...)'."""

    def cell(s: dict[str, Any], fmt: str) -> str:
        seeds = ", ".join(f"{k}: {v:{fmt}}" for k, v in sorted(s["per_seed"].items()))
        return f"{s['mean']:{fmt}} [{s['ci'][0]:{fmt}}, {s['ci'][1]:{fmt}}] ({seeds})"

    out = []
    for r in rows:
        seeds = ", ".join(str(s) for s in r["seeds"])
        for label, key, fmt in ((f"{r['name']} (w_s = {r['w_safety']:g})", "variant", ".3f"),
                                ("selfmoa (main run, train.w_safety)", "main", ".3f"),
                                ("change: selfmoa - " + r["name"], "main_minus_variant", "+.1f")):  # fmt: skip
            vals = r[key]
            out.append(
                {"model": label, "seeds": seeds}
                | {
                    m: cell(vals[m], "+.3f" if m == "helpfulness" and key == "main_minus_variant" else fmt)
                    for _, m, _ in GAINS
                }
            )
    return markdown_table(out, {"model": "model", "seeds": "seeds", "safety": "safety", "over_refusal":
                                "over-refusal", "helpfulness": "helpfulness"})  # fmt: skip


def off_topic_markdown(off_topic: dict[str, dict[str, Any]]) -> str:
    """Markdown table of `off_topic_summary`: per model, the off-topic share of its harmful-prompt refusals
    (mean over seeds [95% CI]) and every seed's share with the refusals it is over."""
    rows = []
    for model, s in off_topic.items():
        seeds = ", ".join(f"{k}: {v:.3f} ({s['n_refusals'].get(k, 0)})" for k, v in s["per_seed"].items())
        rows.append(
            {"model": model, "mean": s["mean"], "mean_lo": s["ci"][0], "mean_hi": s["ci"][1], "per_seed": seeds}
        )
    return markdown_table(rows, {"model": "model", "mean": "off-topic share of refusals, mean over seeds [95% CI]",
                                 "per_seed": "per seed (refusals)"})  # fmt: skip


def by_set_frame(
    values: dict[str, dict[int, dict[tuple[str, str], dict[str, float]]]], kinds: dict[str, str], n_boot: int
) -> pd.DataFrame:
    """`eval_by_set.csv`: one row per (seed, model, set, metric) with the prompt-bootstrap CI of that seed, and
    one row per (model, set, metric) with `seed` = 'mean': the mean over seeds with the seed-and-prompt CI.

    Columns: seed, model, prompt_set, metric, value, lo, hi, n (scored prompts; summed over seeds in mean
    rows), n_seeds. Metrics follow the records (`attack_success_rate`, `harmful_refusal` on harmful sets;
    `over_refusal`, `helpfulness` on benign sets); safety is 1 - attack_success_rate.
    """
    metrics = {"harmful": ("attack_success_rate", "harmful_refusal"), "benign": BENIGN_METRICS}
    rows = []
    for model, by_seed in values.items():
        for where, kind in kinds.items():
            for metric in metrics[kind]:
                for seed in sorted(by_seed):
                    s = metric_summary({seed: by_seed[seed]}, where, metric, n_boot)
                    if s["n_items"]:
                        rows.append({"seed": str(seed), "model": model, "prompt_set": where, "metric": metric,
                                     "value": s["mean"], "lo": s["ci"][0], "hi": s["ci"][1], "n": s["n_items"],
                                     "n_seeds": 1})  # fmt: skip
                s = metric_summary(by_seed, where, metric, n_boot)
                if s["n_items"]:
                    rows.append({"seed": "mean", "model": model, "prompt_set": where, "metric": metric,
                                 "value": s["mean"], "lo": s["ci"][0], "hi": s["ci"][1], "n": s["n_items"],
                                 "n_seeds": s["n_seeds"]})  # fmt: skip
    cols = ["seed", "model", "prompt_set", "metric", "value", "lo", "hi", "n", "n_seeds"]
    return pd.DataFrame(rows, columns=cols)


def loop_model_names(iterations: int) -> dict[str, str]:
    """07_evaluate's model names -> the report's: base, selfmoa_iter<k> for earlier rounds, selfmoa (the last)."""
    out = {"base": "base"}
    for t in range(1, iterations + 1):
        out[f"iter{t}"] = "selfmoa" if t == iterations else f"selfmoa_iter{t}"
    return out


def headline_variants(variants: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Report name -> variant name of the headline baselines (`variant_models`' choice)."""
    out: dict[str, str] = {}
    static = [v for v in variants if v["group"] == "static"]
    if static:
        out["static_dpo"] = max(static, key=lambda v: v["n_pairs"])["name"]
    out |= {v["name"]: v["name"] for v in variants if v["group"] == "objective"}
    return out


def load_seed_run(run: str | Path) -> dict[str, Any]:
    """What 08_report reads from one seed run: its seed (config snapshot), 07_evaluate's summary, loop, judge
    table, per-sample records and capability results under the report's model names, and 07b's variants
    (headline baselines' records and capability where saved; the whole-loop weight variants' w_s and records
    under `loop_weights`).

    Raises:
        FileNotFoundError: a stage output is missing (run the seed run first).
    """
    import yaml

    from selfmoa import artifacts
    from selfmoa.evaluation import canonical_names

    run = Path(run)
    ev, va = run / "07_evaluate", run / "07b_variants"
    for need in (run / "config.yaml", ev / "summary.json", ev / "loop.json", va / "variants.json"):
        if not need.is_file():
            raise FileNotFoundError(f"{need} is missing: run the seed run's stages 00-07b first (selfmoa run)")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    raw = artifacts.read_json(ev / "summary.json")
    evaluated = canonical_names(raw) | {"eval_sets": raw["eval_sets"]}  # set names are not metric names
    loop_doc = canonical_names(artifacts.read_json(ev / "loop.json"))
    variants_doc = canonical_names(artifacts.read_json(va / "variants.json"))
    names = loop_model_names(len(loop_doc["iterations"]))
    records = {names[m]: artifacts.read_jsonl(ev / f"records_{m}.jsonl") for m in names}
    capability = {
        names[m]: artifacts.read_json(ev / f"capability_{m}.json")
        for m in names
        if (ev / f"capability_{m}.json").is_file()
    }
    n_pairs = {name: m.get("n_pairs") for name, m in loop_models(evaluated["models"], loop_doc["iterations"]).items()}
    by_name = {v["name"]: v for v in variants_doc.get("variants", [])}
    loop_weights = {
        v["name"]: {"w_safety": v.get("w_safety"), "records": artifacts.read_jsonl(va / v["records"])}
        for v in variants_doc.get("variants", [])
        if v["group"] == LOOP_WEIGHTS and v.get("records") and (va / v["records"]).is_file()
    }
    for report_name, name in headline_variants(variants_doc.get("variants", [])).items():
        path = va / name / "records.jsonl"
        if path.is_file():
            records[report_name] = artifacts.read_jsonl(path)
            n_pairs[report_name] = by_name[name]["n_pairs"]
        if by_name[name].get("capability"):
            capability[report_name] = by_name[name]["capability"]
    return {
        "seed": int(cfg["seed"]),
        "run_id": run.name,
        "evaluated": evaluated,
        "loop": loop_doc,
        "variants": variants_doc,
        "judges": run / "07_evaluate" / "judges.csv",
        "records": records,
        "n_pairs": n_pairs,
        "capability": capability,
        LOOP_WEIGHTS: loop_weights,
        "sources": [
            f"data/runs/{run.name}/{p.parent.name}/{p.name}"
            for p in (ev / "summary.json", ev / "loop.json", va / "variants.json")
        ],  # fmt: skip
    }


def cross_seed(runs: Sequence[dict[str, Any]], unsafe_below: float, n_boot: int) -> dict[str, Any]:
    """The study over its seed runs (`load_seed_run`): models, headline gains, per set, per seed, by-set table.

    Raises:
        ValueError: no run, two runs with one seed, or seed runs evaluated on different prompt sets.
    """
    if not runs:
        raise ValueError("cross_seed needs at least one seed run")
    seeds = [int(r["seed"]) for r in runs]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"two seed runs share a training seed: {[(r['run_id'], r['seed']) for r in runs]}")
    sets = [r["evaluated"]["eval_sets"] for r in runs]
    if any(s != sets[0] for s in sets):
        raise ValueError(f"seed runs were evaluated on different prompt sets: {dict(zip(seeds, sets, strict=True))}")
    values = seed_model_values(runs, unsafe_below)
    kinds = set_kinds(runs[0]["records"]["base"])
    n_pairs: dict[str, dict[int, int]] = {}
    for r in runs:
        for model, n in r["n_pairs"].items():
            n_pairs.setdefault(model, {})[int(r["seed"])] = n
    return {
        "seeds": sorted(seeds),
        "seed_runs": [r["run_id"] for r in sorted(runs, key=lambda r: r["seed"])],
        "models": cross_seed_models(values, n_pairs, n_boot),
        "gains": headline_gains(values, n_boot),
        "per_set": per_set_summary(values, kinds, n_boot),
        "per_seed": per_seed_table(values, kinds),
        OFF_TOPIC: off_topic_summary(values, n_boot),
        LOOP_WEIGHTS: loop_weight_summary(runs, values.get("selfmoa", {}), unsafe_below, n_boot),
        "by_set": by_set_frame(values, kinds, n_boot),
        "kinds": kinds,
    }


def seed_sections(study: dict[str, Any]) -> dict[str, Any]:
    """The parts of `summary.json` that `cross_seed` adds: seeds, seed runs, gains with intervals, per seed,
    per set, off-topic refusal, the whole-loop weight sweep (NaN written as null)."""
    keys = ("seeds", "seed_runs", "gains", "per_seed", "per_set", OFF_TOPIC, LOOP_WEIGHTS)
    return _finite({k: study[k] for k in keys}) | {"n_seeds": len(study["seeds"])}


def per_set_frame(per_set: dict[str, Any], models: Sequence[str] = ("base", "selfmoa")) -> pd.DataFrame:
    """Per-set bars: harmful sets' safety and benign sets' over-refusal for `models`, mean over seeds with
    the seed-level CI, one row per seed value too (`kind` 'mean' or 'seed').

    Columns: prompt_set, metric, model, kind, seed, value, lo, hi.
    """
    rows = []
    for where, entry in per_set.items():
        if where == ALL_SETS:
            continue
        metric = "safety" if entry["kind"] == "harmful" else "over_refusal"
        for model in models:
            s = entry[metric]["models"].get(model)
            if not s or s["mean"] is None or s["mean"] != s["mean"]:
                continue
            rows.append({"prompt_set": where, "metric": metric, "model": model, "kind": "mean", "seed": None,
                         "value": s["mean"], "lo": s["ci"][0], "hi": s["ci"][1]})  # fmt: skip
            rows += [
                {
                    "prompt_set": where,
                    "metric": metric,
                    "model": model,
                    "kind": "seed",
                    "seed": str(seed),
                    "value": v,
                    "lo": None,
                    "hi": None,
                }  # fmt: skip
                for seed, v in s["per_seed"].items()
            ]
    return pd.DataFrame(rows, columns=["prompt_set", "metric", "model", "kind", "seed", "value", "lo", "hi"])


def seed_spread_frame(gains: dict[str, Any], per_set: dict[str, Any], model: str = "selfmoa") -> pd.DataFrame:
    """The seed spread: per-seed paired gains of `model` against base (all prompts and per set), as points,
    and their mean with its interval.

    Columns: quantity (a `GAINS` name), prompt_set ('all' or a set), kind ('mean' or 'seed'), seed, value, lo, hi.
    """
    rows = []

    def add(quantity: str, where: str, s: dict[str, Any]) -> None:
        if not s or not s.get("per_seed"):
            return
        rows.append({"quantity": quantity, "prompt_set": where, "kind": "mean", "seed": None, "value": s["mean"],
                     "lo": s["ci"][0], "hi": s["ci"][1]})  # fmt: skip
        rows.extend({"quantity": quantity, "prompt_set": where, "kind": "seed", "seed": str(k), "value": v,
                     "lo": None, "hi": None} for k, v in s["per_seed"].items())  # fmt: skip

    for name, s in gains.items():
        add(name, ALL_SETS, s)
    by_metric = {metric: name for name, metric, _ in GAINS}
    for where, entry in per_set.items():
        for metric in SET_METRICS[entry["kind"]]:
            add(by_metric[metric], where, entry[metric].get("change_vs_base", {}).get(model, {}))
    return pd.DataFrame(rows, columns=["quantity", "prompt_set", "kind", "seed", "value", "lo", "hi"])


def loop_frame_seeds(runs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """`loop_frame` of every seed run with a `seed` column (the loop curves show every seed)."""
    frames = [
        loop_frame(r["loop"]["iterations"], r["loop"]["base"]).assign(seed=str(r["seed"]))
        for r in runs
        if r["loop"]["iterations"]
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def gains_markdown(gains: dict[str, Any], per_set: dict[str, Any], model: str = "selfmoa") -> str:
    """Markdown table of the paired changes of `model` against base, on all prompts and per set, with the
    seed-level interval and every seed's value (no average hides a bad set or seed)."""
    by_metric = {metric: name for name, metric, _ in GAINS}
    entries = [(name, ALL_SETS, s) for name, s in gains.items()]
    for where, entry in per_set.items():
        for metric in SET_METRICS[entry["kind"]]:
            entries.append((by_metric[metric], where, entry[metric].get("change_vs_base", {}).get(model)))
    rows = []
    for name, where, s in entries:
        if not s or not s.get("per_seed"):
            continue
        seeds = ", ".join(f"{k}: {v:+.2f}" for k, v in s["per_seed"].items())
        rows.append({"quantity": name, "set": where, "mean": s["mean"], "mean_lo": s["ci"][0],
                     "mean_hi": s["ci"][1], "per_seed": seeds})  # fmt: skip
    return markdown_table(rows, {"quantity": "change", "set": "held-out set", "mean": "mean over seeds [95% CI]",
                                 "per_seed": "per seed"})  # fmt: skip


def per_set_markdown(per_set: dict[str, Any], models: Sequence[str]) -> str:
    """Markdown table: per set and metric, every model's mean over seeds with its seed-level 95% CI."""
    rows = []
    for where, entry in per_set.items():
        for metric in SET_METRICS[entry["kind"]]:
            row: dict[str, Any] = {"set": where, "metric": metric}
            for m in models:
                s = entry[metric]["models"].get(m)
                if s and s["mean"] is not None:
                    row |= {m: s["mean"], f"{m}_lo": s["ci"][0], f"{m}_hi": s["ci"][1]}
            rows.append(row)
    return markdown_table(rows, {"set": "held-out set", "metric": "metric"} | {m: m for m in models})


# ---- capability (lm-eval) over seeds ----


def capability_summary(
    runs: Sequence[dict[str, Any]], n_boot: int, reference: str = "base", seed: int = 0
) -> dict[str, Any]:
    """`summary.json` `capability`: per model and task, the primary lm-eval metric (`PRIMARY_METRIC`) as the
    mean over seeds with a 95% interval, per-seed values and lm-eval's stderr per seed; per model, the paired
    change against `reference` within each seed; and whether each model stays within the reference's interval.

    The interval is the seed-and-prompt bootstrap over lm-eval's per-item scores when they were saved;
    without them, a normal interval from lm-eval's stderrs and the seed spread (`interval` says which).
    """
    import numpy as np

    from selfmoa.capability import PRIMARY_METRIC
    from selfmoa.seeds import paired_gain_summary, seed_summary

    by_model: dict[str, dict[int, dict[str, Any]]] = {}
    for r in runs:
        for model, res in r.get("capability", {}).items():
            by_model.setdefault(model, {})[int(r["seed"])] = res
    if not by_model:
        return {}
    tasks = list(dict.fromkeys(t for per_seed in by_model.values() for res in per_seed.values() for t in res))
    metric = {t: PRIMARY_METRIC.get(t, "acc") for t in tasks}
    models: dict[str, dict[str, Any]] = {}
    for model, per_seed in by_model.items():
        for task in tasks:
            got = {s: res[task] for s, res in per_seed.items() if task in res and metric[task] in res[task]}
            if not got:
                continue
            m = metric[task]
            items = {s: r.get("items", {}).get(m) for s, r in got.items()}
            values = {s: r[m] for s, r in got.items()}
            stderr = {s: r.get(f"{m}_stderr") for s, r in got.items()}
            mean = float(np.mean(list(values.values())))
            if all(items.values()):
                ci, interval = seed_summary(items, n_boot=n_boot, seed=seed)["ci"], "seed-and-item bootstrap"
            else:
                k = len(values)
                var = sum((e or 0.0) ** 2 for e in stderr.values()) / k**2
                var += float(np.var(list(values.values()), ddof=1)) / k if k > 1 else 0.0
                ci, interval = [mean - 1.96 * var**0.5, mean + 1.96 * var**0.5], "normal (lm-eval stderr, seeds)"
            models.setdefault(model, {})[task] = {
                "metric": m, "value": mean, "ci": ci, "interval": interval, "per_seed": values,
                "stderr_per_seed": stderr, "n": max(r.get("n", 0) for r in got.values()), "n_seeds": len(got),
            }  # fmt: skip
    change: dict[str, dict[str, Any]] = {}
    within: dict[str, dict[str, bool]] = {}
    ref = by_model.get(reference, {})
    for model, per_seed in by_model.items():
        if model == reference or model not in models:
            continue
        for task, entry in models[model].items():
            m = metric[task]
            pairs = {
                s: (res[task]["items"][m], ref[s][task]["items"][m])
                for s, res in per_seed.items()
                if s in ref
                and res.get(task, {}).get("items", {}).get(m)
                and ref[s].get(task, {}).get("items", {}).get(m)
            }
            if pairs:
                g = paired_gain_summary(
                    {s: dict(enumerate(a)) for s, (a, _) in pairs.items()},
                    {s: dict(enumerate(b)) for s, (_, b) in pairs.items()},
                    n_boot=n_boot,
                    seed=seed,
                )
                change.setdefault(model, {})[task] = {k: g[k] for k in ("mean", "ci", "per_seed", "n_seeds")}
            base = models.get(reference, {}).get(task)
            if base:
                within.setdefault(model, {})[task] = bool(base["ci"][0] <= entry["value"] <= base["ci"][1])
    return _finite(
        {"metric_by_task": metric, "models": models, f"change_vs_{reference}": change, f"within_{reference}_ci": within}
    )


def capability_frame(cap: dict[str, Any], models: Sequence[str] = ("base", "selfmoa")) -> pd.DataFrame:
    """The capability figure's frame: per task and model (of `models`), the mean with its interval and each
    seed's value. Columns: task, metric, model, kind ('mean' or 'seed'), seed, value, lo, hi."""
    rows = []
    for model in models:
        for task, e in cap.get("models", {}).get(model, {}).items():
            rows.append({"task": task, "metric": e["metric"], "model": model, "kind": "mean", "seed": None,
                         "value": e["value"], "lo": e["ci"][0], "hi": e["ci"][1]})  # fmt: skip
            rows += [
                {
                    "task": task,
                    "metric": e["metric"],
                    "model": model,
                    "kind": "seed",
                    "seed": str(s),
                    "value": v,
                    "lo": None,
                    "hi": None,
                }  # fmt: skip
                for s, v in e["per_seed"].items()
            ]
    return pd.DataFrame(rows, columns=["task", "metric", "model", "kind", "seed", "value", "lo", "hi"])


def capability_markdown(cap: dict[str, Any], reference: str = "base") -> str:
    """Markdown table: per task, every model's primary metric (mean over seeds [95% CI]) and the change of
    each model against `reference` (paired within seeds)."""
    models = list(cap.get("models", {}))
    change = cap.get(f"change_vs_{reference}", {})
    rows = []
    for task, metric in cap.get("metric_by_task", {}).items():
        row: dict[str, Any] = {"task": task, "metric": metric}
        for m in models:
            e = cap["models"][m].get(task)
            if e:
                row |= {m: e["value"], f"{m}_lo": e["ci"][0], f"{m}_hi": e["ci"][1]}
            c = change.get(m, {}).get(task)
            if c:
                row |= {f"d_{m}": c["mean"], f"d_{m}_lo": c["ci"][0], f"d_{m}_hi": c["ci"][1]}
        rows.append(row)
    columns = {"task": "task", "metric": "metric"} | {m: m for m in models}
    columns |= {f"d_{m}": f"{m} - {reference}" for m in models if m in change}
    return markdown_table(rows, columns)


def study_tables_markdown(
    study: dict[str, Any], cap: dict[str, Any], models: Sequence[str], runs: Sequence[dict[str, Any]] = ()
) -> str:
    """The cross-seed sections of `tables.md`: changes of the final policy (all prompts and per set, every
    seed), every model per set, off-topic refusals of every model and round (when the records have
    topicality), capability (when measured) and, with several seeds, the round-by-round loop table of every
    seed after the first (`tables_markdown` holds the first seed's) and the whole-loop weight sweep (when run)."""
    n = len(study["seeds"])
    sections = [
        (f"Closed loop, round by round, seed {r['seed']}", loop_markdown(r["loop"]["iterations"]))
        for r in sorted(runs, key=lambda r: r["seed"])[1:]
        if r["loop"]["iterations"]
    ]
    sections += [
        (f"Changes of the final policy against base, paired within each seed ({n} seeds)",
         gains_markdown(study["gains"], study["per_set"])),
        (f"Per held-out set, mean over {n} seeds [seed-and-prompt 95% CI]", per_set_markdown(study["per_set"], models)),
    ]  # fmt: skip
    if study.get(OFF_TOPIC):
        from selfmoa.evaluation import OFF_TOPIC_BELOW

        title = (f"Off-topic refusals: share of each model's refusals of harmful held-out prompts with MiniLM cosine "
                 f"prompt/response < {OFF_TOPIC_BELOW}, mean over {n} seeds [seed-and-prompt 95% CI]")  # fmt: skip
        sections.append((title, off_topic_markdown(study[OFF_TOPIC])))
    if cap:
        sections.append((f"Capability (lm-eval, zero-shot), mean over {n} seeds [95% CI]", capability_markdown(cap)))
    if study.get(LOOP_WEIGHTS):
        title = (
            "Weights over the whole loop: each `loop_ws<w>` and the main run on the seeds that trained it, "
            "mean over seeds [seed-and-prompt 95% CI] (per seed); change in points (helpfulness: score)"
        )
        sections.append((title, loop_weight_markdown(study[LOOP_WEIGHTS])))
    return "\n\n".join(f"### {title}\n\n{table}" for title, table in sections)


def with_variant_fallback(
    models: dict[str, dict[str, Any]], runs: Sequence[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """`models` plus the headline baselines that have no per-sample records in any seed run: their metrics as
    saved in the first seed run's `variants.json` (`n_seeds` 1, prompt-bootstrap CI)."""
    extra = variant_models(runs[0]["variants"].get("variants", [])) if runs else {}
    return models | {k: {**m, "n_seeds": 1} for k, m in extra.items() if k not in models}


def worst_sets(per_set: dict[str, Any], model: str = "selfmoa") -> str:
    """One line each: the held-out harmful set with the smallest safety gain of `model` over base and the
    benign set with the largest over-refusal rise (means over seeds, with the worst seed)."""
    lines = []
    for kind, metric, pick, word in (("harmful", "safety", min, "safety gain"), ("benign", "over_refusal", max,
                                                                             "over-refusal change")):  # fmt: skip
        gains = {
            where: e[metric]["change_vs_base"][model]
            for where, e in per_set.items()
            if where != ALL_SETS and e["kind"] == kind and model in e[metric].get("change_vs_base", {})
        }
        gains = {k: g for k, g in gains.items() if g["n_seeds"]}
        if not gains:
            continue
        where = pick(gains, key=lambda k: gains[k]["mean"])
        g = gains[where]
        worst_seed = pick(g["per_seed"].values())
        lines.append(f"Weakest {kind} set for {word}: {where}, {g['mean']:+.1f} points (worst seed {worst_seed:+.1f}).")
    return "\n".join(lines) or "no per-set changes (no final model)"
