"""The study's summary: pure functions from saved results (07_evaluate, 07b_variants) to the tables of 08_report.

Also the data frames that `selfmoa.plotting` draws (`models_frame`, `loop_frame`, `variants_frame`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from selfmoa.efficiency import pairs_ratio, ratio_interval

METRICS = ("safety", "over_refusal", "helpfulness")  # the held-out metrics every model is summarised by
# the loop row fields that may hold the over-refusal attack success rate of a round (contrast prompts refused)
OVER_REFUSAL_ASR_KEYS = ("redteam_over_refusal_asr", "over_refusal_asr", "contrast_asr", "contrast_refusal")
POINT_KEYS = ("safety", "safety_ci", "over_refusal", "over_refusal_ci", "helpfulness", "helpfulness_ci", "n_pairs")


def point(m: dict[str, Any]) -> dict[str, Any]:
    """A model's summary in the shape of `summary.json` (safety, over-refusal, helpfulness with CIs, pairs)."""
    return {k: m.get(k) for k in POINT_KEYS}


def loop_models(evaluated: dict[str, Any], loop_rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """base, selfmoa (the policy after the last round) and selfmoa_iter<k> for earlier rounds, with the pairs
    each was trained on in total (cumulative over rounds)."""
    models = {"base": {**evaluated["base"], "n_pairs": 0}}
    cumulative = 0
    for t, row in enumerate(loop_rows, start=1):
        cumulative += row["n_pairs"]
        name = "selfmoa" if t == len(loop_rows) else f"selfmoa_iter{t}"
        models[name] = {**evaluated[f"iter{t}"], "n_pairs": cumulative}
    return models


def variant_models(variants: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Headline baselines from the variants: static_dpo (the largest static size), safety_only, helpfulness_only."""
    out: dict[str, dict[str, Any]] = {}
    static = [v for v in variants if v["group"] == "static"]
    if static:
        largest = max(static, key=lambda v: v["n_pairs"])
        out["static_dpo"] = {**largest["metrics"], "n_pairs": largest["n_pairs"]}
    for v in variants:
        if v["group"] == "objective":
            out[v["name"]] = {**v["metrics"], "n_pairs": v["n_pairs"]}
    return out


SELFMOA_CURVE = "Self-MOA (own pairs, all rounds)"
STATIC_CURVE = "static curated DPO (loop schedule)"
ONE_ROUND_CURVES = ("Self-MOA (one round)", "static curated DPO (one round)")
EFFICIENCY_VALUES = ("safety", "over_refusal", "capability")  # capability: a column filled where measured


def efficiency_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Held-out metrics against TOTAL training pairs, for the fair comparison and the one-round baselines.

    Fair curves (both on the loop's schedule, so they differ only in the source of the pairs): `SELFMOA_CURVE`
    = the loop capped at N pairs per round (`selfmoa_cap<N>`) and the main run's final policy (`selfmoa`);
    `STATIC_CURVE` = curated pairs on the same schedule (`static_sched_n<N>`). One-round curves (one round from
    the starting policy, not comparable with the loop): Self-MOA round-0 subsamples and round 1, and the static
    baseline at its sizes. The starting policy enters every curve at 0 pairs.

    Args:
        df: `variants_frame`; a `capability` column (primary capability score) is carried where present.

    Returns:
        Columns: curve, name, n_pairs, then safety, over_refusal and capability, each with `_lo` / `_hi`.
    """
    df = df.copy()
    for k in ("capability", "capability_lo", "capability_hi"):
        if k not in df:
            df[k] = None
    values = [c for k in EFFICIENCY_VALUES for c in (k, f"{k}_lo", f"{k}_hi")]
    cols = ["name", "n_pairs", *values]
    base = df[df["group"] == "base"][cols]
    parts = {
        SELFMOA_CURVE: df[(df["group"] == "selfmoa_cap") | (df["name"] == "selfmoa")],
        STATIC_CURVE: df[df["group"] == "static_schedule"],
        ONE_ROUND_CURVES[0]: df[(df["group"] == "data") | (df["name"] == "selfmoa_round1")],
        ONE_ROUND_CURVES[1]: df[df["group"] == "static"],
    }
    frames = [pd.concat([base, part[cols]]).assign(curve=curve) for curve, part in parts.items() if len(part)]
    if not frames:
        return pd.DataFrame(columns=["curve", *cols])
    out = pd.concat(frames, ignore_index=True).drop_duplicates(subset=["curve", "n_pairs"], keep="last")
    return out.sort_values(["curve", "n_pairs"]).reset_index(drop=True)[["curve", *cols]]


def efficiency_points(curves: pd.DataFrame, safe_flags: dict[str, list[Any]], curve: str) -> list[dict[str, Any]]:
    """The points of one curve in `selfmoa.efficiency.ratio_interval`'s shape (n_pairs, per-seed safe flags).

    Args:
        curves: `efficiency_curves`.
        safe_flags: model name -> one array per seed of per-prompt safe flags (`safe_flags`), seeds aligned.
        curve: the curve's name.
    """
    part = curves[curves["curve"] == curve]
    missing = sorted(set(part["name"]) - set(safe_flags))
    if missing:
        raise ValueError(f"no per-prompt records for {missing}: pass them in safe_flags")
    return [
        {"n_pairs": float(n), "safe": safe_flags[name]} for name, n in zip(part["name"], part["n_pairs"], strict=True)
    ]


def safe_flags(records: Sequence[dict[str, Any]], unsafe_below: float) -> Any:
    """Per-prompt safe flags (1 safe, 0 unsafe, NaN unscored) of a model's harmful held-out records, by item id."""
    import numpy as np

    from selfmoa.evaluation import per_sample_flags

    harmful = sorted((r for r in records if r["is_harmful"]), key=lambda r: (str(r["prompt_set"]), str(r["id"])))
    return 1.0 - np.asarray(per_sample_flags(harmful, unsafe_below)["unsafe"], dtype=float)


def pairs_ratio_from_curves(
    curves: pd.DataFrame, flags: dict[str, list[Any]] | None = None, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Static/Self-MOA pairs ratio of the fair curves (`selfmoa.efficiency`), with a bootstrap interval over
    seeds and prompts when per-prompt `flags` (`efficiency_points`) are given."""
    names = set(curves["curve"])
    if not {SELFMOA_CURVE, STATIC_CURVE} <= names:
        return {"ratio": None, "note": "no fair comparison: set study.schedule_sizes (static and capped loop variants)"}
    if flags:
        return ratio_interval(
            efficiency_points(curves, flags, STATIC_CURVE),
            efficiency_points(curves, flags, SELFMOA_CURVE),
            n_boot=n_boot,
            seed=seed,
        )

    def pts(curve: str) -> list[tuple[float, float]]:
        part = curves[curves["curve"] == curve]
        return [(float(n), float(s)) for n, s in zip(part["n_pairs"], part["safety"], strict=True)]

    return pairs_ratio(pts(STATIC_CURVE), pts(SELFMOA_CURVE)) | {"ci": None}


def _run_records(run: dict[str, Any], folder: Any, name: str) -> list[dict[str, Any]]:
    """Per-prompt records of one model of a seed run: loop models from 07_evaluate, variants from 07b."""

    from selfmoa import artifacts

    loop_names = {"selfmoa_round1": "selfmoa_iter1" if "selfmoa_iter1" in run["records"] else "selfmoa"}
    name = loop_names.get(name, name)
    if name in run["records"]:
        return run["records"][name]
    return artifacts.read_jsonl(Path(folder) / "07b_variants" / name / "records.jsonl")


def efficiency_study(
    seed_dirs: Sequence[Any], runs: Sequence[dict[str, Any]], unsafe_below: float, n_boot: int
) -> tuple[pd.DataFrame, dict[str, list[Any]]]:
    """`efficiency_curves` over every seed run (`load_seed_run`), with seed-level intervals, and the per-prompt
    safe flags of every point (for `pairs_ratio_from_curves`).

    The seeds used are those whose 07b trained every variant any seed trained (a study runs the loop variants for
    `study.loop_variant_seeds` only); a point's pairs are the mean over them, its safety and over-refusal the mean
    with a 95% interval that resamples seeds, then prompts (`selfmoa.seeds`; one seed: prompts). Column `seeds`
    names them.
    """

    import numpy as np

    from selfmoa.evaluation import per_sample_flags
    from selfmoa.seeds import hierarchical_bootstrap_ci

    per_seed = []
    for run in runs:
        final = {**run["evaluated"]["models"][f"iter{len(run['loop']['iterations'])}"]}
        final |= {"n_pairs": run["n_pairs"].get("selfmoa")}
        per_seed.append(efficiency_curves(variants_frame(run["variants"], {"selfmoa": final})))
    # seeds without the loop variants (study.loop_variant_seeds) are left out, so every point has the same seeds
    point_sets = [set(zip(c["curve"], c["name"], strict=True)) for c in per_seed]
    union = set().union(*point_sets)
    use = [i for i, pts in enumerate(point_sets) if pts == union] or list(range(len(runs)))
    runs, seed_dirs, per_seed = [runs[i] for i in use], [seed_dirs[i] for i in use], [per_seed[i] for i in use]
    keys = set.intersection(*(point_sets[i] for i in use)) if use else set()
    rows, flags = [], {}
    for curve, name in sorted(keys):
        pts = [c[(c["curve"] == curve) & (c["name"] == name)].iloc[0] for c in per_seed]
        recs = [_run_records(run, Path(d), name) for run, d in zip(runs, seed_dirs, strict=True)]
        flags[name] = [safe_flags(r, unsafe_below) for r in recs]
        over = [per_sample_flags([x for x in r if not x["is_harmful"]], unsafe_below)["over_refusal"] for r in recs]
        row = {"curve": curve, "name": name, "n_pairs": float(np.mean([p["n_pairs"] for p in pts])),
               "seeds": ",".join(str(r.get("seed")) for r in runs)}  # fmt: skip
        for metric, groups in (("safety", flags[name]), ("over_refusal", over)):
            row[metric] = float(np.mean([np.nanmean(g) for g in groups]))
            row[f"{metric}_lo"], row[f"{metric}_hi"] = hierarchical_bootstrap_ci(groups, n_boot=n_boot)
        caps = [p["capability"] for p in pts if p["capability"] is not None and not pd.isna(p["capability"])]
        row |= {"capability": float(np.mean(caps)) if caps else None, "capability_lo": None, "capability_hi": None}
        rows.append(row)
    cols = ["curve", "name", "n_pairs", *(c for k in EFFICIENCY_VALUES for c in (k, f"{k}_lo", f"{k}_hi")), "seeds"]
    return pd.DataFrame(rows, columns=cols).sort_values(["curve", "n_pairs"]).reset_index(drop=True), flags


PARETO_LOOP_GROUPS = ("loop_weights", "selfmoa_cap", "static_schedule")


def pareto_frame(df: pd.DataFrame) -> pd.DataFrame:
    """The models of the Pareto figure: with loop-schedule variants, the full-loop results only (base, the main
    run's final policy, the loop weight sweep, the capped loops, the static schedule); else every one-round
    model of the older design."""
    if df["group"].isin(PARETO_LOOP_GROUPS).any():
        keep = df["group"].isin(("base", *PARETO_LOOP_GROUPS)) | (df["name"] == "selfmoa")
        return df[keep].reset_index(drop=True)
    return df[df["group"].isin(("base", "loop", "weights", "objective", "static"))].reset_index(drop=True)


def loop_weight_table(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The weight sweep over the whole loop: the main run (`selfmoa`) and every `loop_ws<w>`, by w_s."""
    rows = sweep_table(df, ["loop_weights"], reference="selfmoa")
    return sorted(rows, key=lambda r: (r["w_safety"] is None, r["w_safety"] or 0.0))


SWEEP_KEYS = ("name", "group", "n_pairs", "w_safety", "w_helpful", "label_noise", "safety", "safety_lo", "safety_hi",
              "over_refusal", "over_refusal_lo", "over_refusal_hi", "helpfulness", "helpfulness_lo", "helpfulness_hi")  # fmt: skip


def sweep_table(df: pd.DataFrame, groups: Sequence[str], reference: str = "selfmoa_round1") -> list[dict[str, Any]]:
    """Rows of the given variant groups plus the loop's round-1 reference point, as plain dicts."""
    keep = df[df["group"].isin(groups) | (df["name"] == reference)]
    return [{k: (None if pd.isna(v) else v) for k, v in r.items()} for r in keep[list(SWEEP_KEYS)].to_dict("records")]


def summary(
    profile: str,
    policy: str,
    eval_sets: dict[str, int],
    models: dict[str, dict[str, Any]],
    ratio: dict[str, Any],
    gains: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`summary.json`: headline models and the changes of `selfmoa` against `base` (points = percentage points).

    With `gains` (`headline_gains`: means over seeds of per-seed paired gains) the changes are their means;
    without, the differences of the two models' values.
    """
    base = models["base"]
    sel = models.get("selfmoa", base)
    diff = {
        "safety_gain_points": 100 * (sel["safety"] - base["safety"]),
        "over_refusal_change_points": 100 * (sel["over_refusal"] - base["over_refusal"]),
        "helpfulness_change": sel["helpfulness"] - base["helpfulness"],
    }
    if gains:
        diff = {k: gains[k]["mean"] if k in gains else v for k, v in diff.items()}
    return {
        "profile": profile,
        "policy": policy,
        "eval_sets": eval_sets,
        "models": {name: point(m) for name, m in models.items()},
        "safety_gain_points": round(diff["safety_gain_points"], 2),
        "over_refusal_change_points": round(diff["over_refusal_change_points"], 2),
        "helpfulness_change": round(diff["helpfulness_change"], 4),
        "pairs_ratio_static_over_selfmoa": ratio.get("ratio"),
        "pairs_ratio_note": ratio.get("note"),
        "pairs_ratio_detail": ratio,
    }


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def markdown_table(rows: Sequence[dict[str, Any]], columns: dict[str, str]) -> str:
    """A markdown table of `rows`; `columns` maps a row key to its header.

    A key `x` whose row also holds `x_lo` and `x_hi` is written `value [lo, hi]`; floats get 3 decimals and
    missing values a dash.
    """
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = []
        for key in columns:
            cell = _cell(r.get(key))
            if r.get(f"{key}_lo") is not None and r.get(f"{key}_hi") is not None:
                cell += f" [{_cell(r[f'{key}_lo'])}, {_cell(r[f'{key}_hi'])}]"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def loop_markdown(loop_rows: Sequence[dict[str, Any]]) -> str:
    """Per-round table of the closed loop: red-team success and diversity, pairs by source, held-out metrics after."""
    rows = []
    for r in loop_rows:
        after, src = r["heldout_after"], r["pairs_by_source"]
        row = {
            "round": r["iteration"] + 1,
            "asr": r["redteam_asr"],
            "diversity": r["attack_diversity"],
            "pairs": f"{r['n_pairs']} ({src.get('sampled', 0)} / {src.get('self_revision', 0)} / {src.get('template', 0)})",
        }
        for k in ("safety", "over_refusal", "helpfulness"):
            row |= {k: after[k], f"{k}_lo": after[f"{k}_ci"][0], f"{k}_hi": after[f"{k}_ci"][1]}
        rows.append(row)
    columns = {
        "round": "round",
        "asr": "red-team attack success (training judges)",
        "diversity": "attack diversity",
        "pairs": "pairs (sampled / self-revision / template)",
        "safety": "held-out safety after",
        "over_refusal": "over-refusal after",
        "helpfulness": "helpfulness after",
    }
    return markdown_table(rows, columns)


SWEEP_COLUMNS = {
    "name": "model",
    "w_safety": "w_s",
    "w_helpful": "w_h",
    "label_noise": "flipped",
    "n_pairs": "pairs",
    "safety": "safety",
    "over_refusal": "over-refusal",
    "helpfulness": "helpfulness",
}


def training_judge_accuracy(judge_table: pd.DataFrame) -> float | None:
    """Measured accuracy of the training safety ensemble on held-out labelled answers (None when not validated).

    The plain held-out answers, not the `safety_wrapped` rows (answers wrapped in refusal text, their own check).
    """
    rows = judge_table.query("configuration == 'train' and aspect == 'safety' and judge == 'ensemble'")
    if "reference" in rows.columns:
        rows = rows[rows["reference"] != "safety_wrapped"]
    acc = rows["accuracy"]
    return float(acc.iloc[0]) if len(acc) else None


def summary_details(
    weights: list[dict[str, Any]],
    curves: pd.DataFrame,
    noise: pd.DataFrame,
    train_acc: float | None,
    evaluated: dict[str, Any],
) -> dict[str, Any]:
    """The parts of `summary.json` beyond `summary`: sweeps, data efficiency, label noise, judges, paired tests."""
    return {
        "weight_sweep": weights,
        "data_efficiency": curves.to_dict("records"),
        "label_noise": noise.to_dict("records"),
        "training_judge_safety_accuracy": train_acc,
        "judges": evaluated["judges"],
        "paired_final_vs_base": evaluated.get("paired_final_vs_base"),
    }


EFFICIENCY_COLUMNS = {"curve": "curve", "name": "model", "n_pairs": "total pairs", "safety": "safety",
                      "over_refusal": "over-refusal"}  # fmt: skip


def tables_markdown(
    loop_rows: Sequence[dict[str, Any]], weights: list[dict[str, Any]], curves: pd.DataFrame, noise: pd.DataFrame
) -> str:
    """`tables.md`: the closed loop, the weight sweep, data efficiency and the label-noise sweep, with 95% CIs."""
    sections = [
        ("Closed loop, round by round", loop_markdown(loop_rows)),
        (
            "Weight sweep (w_s over the whole loop; 'ws..' rows: one round) and objective ablations (one round)",
            markdown_table(weights, SWEEP_COLUMNS),
        ),
        ("Data efficiency", markdown_table(curves.to_dict("records"), EFFICIENCY_COLUMNS)),
        (
            "Label-noise sweep (one round from the starting policy)",
            markdown_table(noise.to_dict("records"), SWEEP_COLUMNS),
        ),
    ]
    return "\n\n".join(f"### {title}\n\n{table}" for title, table in sections)


# ---- frames drawn by selfmoa.plotting ----


def models_frame(models: dict[str, dict[str, Any]], metrics: tuple[str, ...] = METRICS) -> pd.DataFrame:
    """Long table model, metric, value, lo, hi from {model: {metric, metric_ci}} summaries."""
    rows = []
    for name, m in models.items():
        for metric in metrics:
            if m.get(metric) is None:
                continue
            lo, hi = m.get(f"{metric}_ci") or (m[metric], m[metric])
            rows.append({"model": name, "metric": metric, "value": m[metric], "lo": lo, "hi": hi})
    return pd.DataFrame(rows, columns=["model", "metric", "value", "lo", "hi"])


def loop_frame(loop_rows: list[dict[str, Any]], base: dict[str, Any]) -> pd.DataFrame:
    """Per-iteration curves in long form: iteration, quantity, value, lo, hi.

    x = k is the policy after k rounds (0 = before the loop); red-team points at x = k are round k's attacks,
    written against that policy. Rows that carry the over-refusal attack success rate (benign-but-sensitive
    prompts the policy refused; `OVER_REFUSAL_ASR_KEYS`) add a 'red-team over-refusal success' curve.
    """
    rows = [
        {
            "iteration": 0,
            "quantity": "held-out safety",
            "value": base["safety"],
            "lo": base["safety_ci"][0],
            "hi": base["safety_ci"][1],
        },
        {
            "iteration": 0,
            "quantity": "held-out helpfulness",
            "value": base["helpfulness"],
            "lo": base["helpfulness_ci"][0],
            "hi": base["helpfulness_ci"][1],
        },
    ]
    for r in loop_rows:
        t = r["iteration"] + 1
        after = r["heldout_after"]
        rows += [
            {
                "iteration": t,
                "quantity": "held-out safety",
                "value": after["safety"],
                "lo": after["safety_ci"][0],
                "hi": after["safety_ci"][1],
            },
            {
                "iteration": t,
                "quantity": "held-out helpfulness",
                "value": after["helpfulness"],
                "lo": after["helpfulness_ci"][0],
                "hi": after["helpfulness_ci"][1],
            },
            {
                "iteration": t - 1,
                "quantity": "red-team attack success",
                "value": r["redteam_asr"],
                "lo": None,
                "hi": None,
            },
            {
                "iteration": t - 1,
                "quantity": "attack diversity",
                "value": r["attack_diversity"],
                "lo": None,
                "hi": None,
            },
        ]
        over = next((r[k] for k in OVER_REFUSAL_ASR_KEYS if r.get(k) is not None), None)
        if over is not None:
            rows.append(
                {"iteration": t - 1, "quantity": "red-team over-refusal success", "value": over, "lo": None, "hi": None}
            )
    return pd.DataFrame(rows)


def _ci_columns(m: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k in METRICS:
        lo, hi = m.get(f"{k}_ci") or (m.get(k), m.get(k))
        out.update({k: m.get(k), f"{k}_lo": lo, f"{k}_hi": hi})
    return out


def variants_frame(doc: dict[str, Any], loop_models: dict[str, dict[str, Any]] | None = None) -> pd.DataFrame:
    """One row per model of the study: name, group, n_pairs, w_safety, w_helpful, label_noise and each metric
    with its CI bounds (`<metric>_lo`, `<metric>_hi`).

    Args:
        doc: `07b_variants/variants.json` (reference points and variants).
        loop_models: extra loop models, {name: summary with n_pairs} (group 'loop'), e.g. the final policy.
    """
    rows = []
    for name, m in doc.get("reference", {}).items():
        group = "base" if name == "base" else "loop"
        rows.append(
            {"name": name, "group": group, "n_pairs": m.get("n_pairs"), "w_safety": m.get("w_safety"),
             "w_helpful": m.get("w_helpful"), "label_noise": m.get("label_noise"), **_ci_columns(m)}
        )  # fmt: skip
    for name, m in (loop_models or {}).items():
        rows.append(
            {"name": name, "group": "loop", "n_pairs": m.get("n_pairs"), "w_safety": m.get("w_safety"),
             "w_helpful": m.get("w_helpful"), "label_noise": m.get("label_noise"), **_ci_columns(m)}
        )  # fmt: skip
    for v in doc.get("variants", []):
        rows.append(
            {"name": v["name"], "group": v["group"], "n_pairs": v["n_pairs"], "w_safety": v["w_safety"],
             "w_helpful": v["w_helpful"], "label_noise": v["label_noise"], **_ci_columns(v["metrics"]),
             "capability": capability_score(v.get("capability"))}
        )  # fmt: skip
    cols = ["name", "group", "n_pairs", "w_safety", "w_helpful", "label_noise"]
    cols += [c for k in METRICS for c in (k, f"{k}_lo", f"{k}_hi")]
    return pd.DataFrame(rows, columns=[*cols, "capability"])


def capability_score(cap: dict[str, Any] | None) -> float | None:
    """Mean over tasks of the primary capability accuracy (acc_norm where lm-eval gives it, else acc); None
    when the model was not scored (the hook of the data-efficiency curves)."""
    if not cap:
        return None
    vals = [t.get("acc_norm", t.get("acc")) for t in cap.values() if isinstance(t, dict)]
    vals = [float(v) for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def headline_markdown(models: dict[str, dict[str, Any]]) -> str:
    """Markdown table: model, safety, over-refusal, helpfulness (each with its 95% CI), pairs."""
    rows = []
    for name, m in models.items():
        row = {"model": name, "n_pairs": m.get("n_pairs")}
        for k in ("safety", "over_refusal", "helpfulness"):
            row |= {k: m[k], f"{k}_lo": m[f"{k}_ci"][0], f"{k}_hi": m[f"{k}_ci"][1]}
        rows.append(row)
    columns = {"model": "model", "safety": "safety", "over_refusal": "over-refusal", "helpfulness": "helpfulness"}
    return markdown_table(rows, columns | {"n_pairs": "pairs"})
