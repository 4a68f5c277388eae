"""The study's summary: pure functions from saved results (07_evaluate, 07b_variants) to the tables of 08_report.

Also the data frames that `selfmoa.plotting` draws (`models_frame`, `loop_frame`, `variants_frame`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from selfmoa.variants import pairs_ratio

METRICS = ("safety", "over_refusal", "helpfulness")  # the held-out metrics every model is summarised by
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


def efficiency_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Safety against pairs for 'Self-MOA' (data subsamples and every loop round) and the 'static DPO' baseline.

    `df` is `variants_frame`; the starting policy enters both curves at 0 pairs.
    Columns: curve, name, n_pairs, safety, safety_lo, safety_hi.
    """
    cols = ["name", "n_pairs", "safety", "safety_lo", "safety_hi"]
    base = df[df["group"] == "base"][cols]
    selfmoa = df[df["group"].isin(["data", "loop"])][cols]
    static = df[df["group"] == "static"][cols]
    parts = [
        pd.concat([base, selfmoa]).assign(curve="Self-MOA (own pairs)"),
        pd.concat([base, static]).assign(curve="static curated DPO"),
    ]
    out = pd.concat(parts, ignore_index=True).drop_duplicates(subset=["curve", "n_pairs"], keep="last")
    return out.sort_values(["curve", "n_pairs"]).reset_index(drop=True)[["curve", *cols]]


def pairs_ratio_from_curves(curves: pd.DataFrame) -> dict[str, Any]:
    """`selfmoa.variants.pairs_ratio` of the two curves of `efficiency_curves`."""

    def pts(curve: str) -> list[tuple[int, float]]:
        part = curves[curves["curve"] == curve]
        return [(int(n), float(s)) for n, s in zip(part["n_pairs"], part["safety"], strict=True)]

    return pairs_ratio(pts("static curated DPO"), pts("Self-MOA (own pairs)"))


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
) -> dict[str, Any]:
    """`summary.json`: headline models and the changes of `selfmoa` against `base` (points = percentage points)."""
    base = models["base"]
    sel = models.get("selfmoa", base)
    return {
        "profile": profile,
        "policy": policy,
        "eval_sets": eval_sets,
        "models": {name: point(m) for name, m in models.items()},
        "safety_gain_points": round(100 * (sel["safety"] - base["safety"]), 2),
        "over_refusal_change_points": round(100 * (sel["over_refusal"] - base["over_refusal"]), 2),
        "helpfulness_change": round(sel["helpfulness"] - base["helpfulness"], 4),
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
    """Measured accuracy of the training safety ensemble on held-out labelled answers (None when not validated)."""
    acc = judge_table.query("configuration == 'train' and aspect == 'safety' and judge == 'ensemble'")["accuracy"]
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


EFFICIENCY_COLUMNS = {"curve": "curve", "name": "model", "n_pairs": "pairs", "safety": "safety"}


def tables_markdown(
    loop_rows: Sequence[dict[str, Any]], weights: list[dict[str, Any]], curves: pd.DataFrame, noise: pd.DataFrame
) -> str:
    """`tables.md`: the closed loop, the weight sweep, data efficiency and the label-noise sweep, with 95% CIs."""
    sections = [
        ("Closed loop, round by round", loop_markdown(loop_rows)),
        (
            "Weight sweep and objective ablations (one round from the starting policy)",
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
    written against that policy.
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
        rows.append({"name": name, "group": "loop", "n_pairs": m.get("n_pairs"), **_ci_columns(m)})
    for v in doc.get("variants", []):
        rows.append(
            {"name": v["name"], "group": v["group"], "n_pairs": v["n_pairs"], "w_safety": v["w_safety"],
             "w_helpful": v["w_helpful"], "label_noise": v["label_noise"], **_ci_columns(v["metrics"])}
        )  # fmt: skip
    cols = ["name", "group", "n_pairs", "w_safety", "w_helpful", "label_noise"]
    cols += [c for k in METRICS for c in (k, f"{k}_lo", f"{k}_hi")]
    return pd.DataFrame(rows, columns=cols)


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
