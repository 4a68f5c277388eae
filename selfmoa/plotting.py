"""Figures of the study: pure `plot_*(df) -> Figure` functions with seaborn, and `save` (png + json sidecar)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

METRIC_LABELS = {
    "safety": "safety (1 - harmful compliance)",
    "over_refusal": "over-refusal rate",
    "helpfulness": "helpfulness (judge score)",
}


def models_frame(models: dict[str, dict[str, Any]], metrics: tuple[str, ...] = tuple(METRIC_LABELS)) -> pd.DataFrame:
    """Long table model, metric, value, lo, hi from {model: {metric, metric_ci}} summaries."""
    rows = []
    for name, m in models.items():
        for metric in metrics:
            if m.get(metric) is None:
                continue
            lo, hi = m.get(f"{metric}_ci") or (m[metric], m[metric])
            rows.append({"model": name, "metric": metric, "value": m[metric], "lo": lo, "hi": hi})
    return pd.DataFrame(rows, columns=["model", "metric", "value", "lo", "hi"])


def plot_models(df: pd.DataFrame) -> Any:
    """One panel per metric: a bar per model with its 95% CI."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    metrics = list(dict.fromkeys(df["metric"]))
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.4), squeeze=False)
    palette = sns.color_palette("colorblind", n_colors=df["model"].nunique())
    for ax, metric in zip(axes[0], metrics, strict=True):
        sub = df[df["metric"] == metric].reset_index(drop=True)
        ax.bar(sub["model"], sub["value"], color=palette[: len(sub)])
        ax.errorbar(
            sub["model"],
            sub["value"],
            yerr=[sub["value"] - sub["lo"], sub["hi"] - sub["value"]],
            fmt="none",
            ecolor="black",
            capsize=4,
        )
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(METRIC_LABELS.get(metric, metric))
        ax.set_xlabel("model")
        ax.tick_params(axis="x", rotation=30)
    fig.suptitle("Held-out evaluation (bars: 95% bootstrap CI)")
    fig.tight_layout()
    return fig


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


def plot_loop(df: pd.DataFrame) -> Any:
    """Closed-loop curves: held-out safety/helpfulness (with CIs) and red-team attack success and diversity."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    quantities = list(dict.fromkeys(df["quantity"]))
    palette = dict(zip(quantities, sns.color_palette(n_colors=len(quantities)), strict=True))
    sns.lineplot(data=df, x="iteration", y="value", hue="quantity", palette=palette, marker="o", ax=ax)
    ci = df.dropna(subset=["lo", "hi"])
    for quantity, sub in ci.groupby("quantity"):
        ax.fill_between(
            sub["iteration"], sub["lo"].astype(float), sub["hi"].astype(float), color=palette[quantity], alpha=0.15
        )
    ax.set_xlabel("policy after k rounds (red-team points: round k's attacks against it)")
    ax.set_ylabel("rate / score")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(sorted(df["iteration"].unique()))
    ax.legend(fontsize=8, loc="best")
    ax.set_title("Self-MOA closed loop")
    fig.tight_layout()
    return fig


def save(fig: Any, name: str, folder: str | Path, sources: list[str], notes: str = "") -> Path:
    """Write `<folder>/<name>.png` and a `<name>.json` sidecar naming the result files it was drawn from."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}.png"
    fig.savefig(png, dpi=120, bbox_inches="tight")
    (folder / f"{name}.json").write_text(
        json.dumps({"figure": png.name, "sources": sources, "notes": notes}, indent=2) + "\n"
    )
    return png


def headline_markdown(models: dict[str, dict[str, Any]]) -> str:
    """Markdown table: model, safety, over-refusal, helpfulness (each with its 95% CI), pairs."""
    from selfmoa.report import markdown_table

    rows = []
    for name, m in models.items():
        row = {"model": name, "n_pairs": m.get("n_pairs")}
        for k in ("safety", "over_refusal", "helpfulness"):
            row |= {k: m[k], f"{k}_lo": m[f"{k}_ci"][0], f"{k}_hi": m[f"{k}_ci"][1]}
        rows.append(row)
    columns = {"model": "model", "safety": "safety", "over_refusal": "over-refusal", "helpfulness": "helpfulness"}
    return markdown_table(rows, columns | {"n_pairs": "pairs"})


def _ci_columns(m: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k in METRIC_LABELS:
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
    cols += [c for k in METRIC_LABELS for c in (k, f"{k}_lo", f"{k}_hi")]
    return pd.DataFrame(rows, columns=cols)


def _errorbars(ax: Any, df: pd.DataFrame, x: str, y: str, **kw: Any) -> None:
    ax.errorbar(
        df[x],
        df[y],
        xerr=[df[x] - df[f"{x}_lo"], df[f"{x}_hi"] - df[x]] if f"{x}_lo" in df else None,
        yerr=[df[y] - df[f"{y}_lo"], df[f"{y}_hi"] - df[y]],
        fmt="none",
        ecolor="grey",
        elinewidth=0.8,
        capsize=2,
        **kw,
    )


PARETO_GROUPS = ("base", "loop", "weights", "objective", "static")


def plot_pareto(df: pd.DataFrame) -> Any:
    """Safety against helpfulness (95% CIs) for the loop, the weight sweep, the ablations and the static
    baseline; over-refusal as colour. Weight-sweep points are labelled by their weights, the others by name."""
    import matplotlib.pyplot as plt

    sub = df[df["group"].isin(PARETO_GROUPS)].dropna(subset=["safety", "helpfulness"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(7, 5))
    _errorbars(ax, sub, "helpfulness", "safety")
    markers = {"base": "X", "loop": "*", "weights": "o", "objective": "s", "static": "^"}
    points = None
    for group, part in sub.groupby("group", sort=False):
        points = ax.scatter(part["helpfulness"], part["safety"], c=part["over_refusal"], cmap="viridis", vmin=0,
                            vmax=0.3, marker=markers[group], s=90, zorder=3, label=group, edgecolors="black")  # fmt: skip
    for _, r in sub.iterrows():
        label = f"w_s={r['w_safety']:g}, w_h={r['w_helpful']:g}" if r["group"] == "weights" else r["name"]
        ax.annotate(label, (r["helpfulness"], r["safety"]), fontsize=6.5, xytext=(4, 3), textcoords="offset points")
    if points is not None:
        fig.colorbar(points, ax=ax, label="over-refusal rate (benign-but-sensitive prompts)")
    ax.set_xlabel(METRIC_LABELS["helpfulness"] + " on held-out benign prompts")
    ax.set_ylabel(METRIC_LABELS["safety"] + " on held-out harmful prompts")
    ax.set_title("Safety vs helpfulness (bars: 95% CI)")
    ax.legend(fontsize=7, loc="best", title="marker: group", title_fontsize=7)
    fig.tight_layout()
    return fig


def plot_data_efficiency(df: pd.DataFrame, base_safety: float) -> Any:
    """Held-out safety against training pairs: Self-MOA (its own pairs) vs the static curated baseline."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, part in df.groupby("curve", sort=False):
        part = part.sort_values("n_pairs")
        ax.plot(part["n_pairs"], part["safety"], marker="o", label=label)
        ax.fill_between(part["n_pairs"], part["safety_lo"], part["safety_hi"], alpha=0.15)
    ax.axhline(base_safety, color="grey", linestyle="--", linewidth=1, label="starting policy")
    ax.set_xscale("log")
    ax.set_xlabel("preference pairs trained on (log scale)")
    ax.set_ylabel(METRIC_LABELS["safety"])
    ax.set_ylim(0, 1.05)
    ax.set_title("Data efficiency (shaded: 95% CI)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_label_noise(df: pd.DataFrame, judge_accuracy: float | None = None) -> Any:
    """Held-out metrics against the fraction of flipped training safety decisions (95% CIs).

    With the training judges' measured safety accuracy a, flipping a fraction p gives an effective
    accuracy a(1 - p) + (1 - a)p, shown on a second axis.
    """
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    df = df.sort_values("label_noise")
    for k in METRIC_LABELS:
        ax.plot(df["label_noise"], df[k], marker="o", label=METRIC_LABELS[k])
        ax.fill_between(df["label_noise"], df[f"{k}_lo"], df[f"{k}_hi"], alpha=0.15)
    ax.set_xlabel("fraction of training safety decisions flipped")
    ax.set_ylabel("rate / score on held-out sets")
    ax.set_ylim(0, 1.05)
    if judge_accuracy is not None and abs(1 - 2 * judge_accuracy) > 1e-6:
        top = ax.secondary_xaxis(
            "top",
            functions=(
                lambda p: judge_accuracy * (1 - p) + (1 - judge_accuracy) * p,
                lambda a: (a - judge_accuracy) / (1 - 2 * judge_accuracy),
            ),
        )
        top.set_xlabel("effective training-judge safety accuracy")
    ax.set_title("Weak supervision: label-noise sweep (shaded: 95% CI)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
