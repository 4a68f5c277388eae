"""Figures of the study: pure `plot_*(df) -> Figure` functions with seaborn, and `save` (png + json sidecar).

The frames they draw are shaped in `selfmoa.report` (`models_frame`, `loop_frame`, `variants_frame`).
"""

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


def spread_positions(values: list[float], gap: float, lo: float = 0.0, hi: float = 1.0) -> list[float]:
    """Positions as close as possible to `values`, in [lo, hi], at least `gap` apart, in the same order.

    Used to stack point labels in a column beside a plot so that no two overlap. When they cannot all fit
    (len(values) * gap > hi - lo) the gap shrinks to fit.
    """
    if not values:
        return []
    gap = min(gap, (hi - lo) / max(1, len(values) - 1))
    order = sorted(range(len(values)), key=lambda i: values[i])
    pos = [min(max(values[i], lo), hi) for i in order]
    for k in range(1, len(pos)):  # push up from the bottom
        pos[k] = max(pos[k], pos[k - 1] + gap)
    pos[-1] = min(pos[-1], hi)
    for k in range(len(pos) - 2, -1, -1):  # then down from the top
        pos[k] = min(pos[k], pos[k + 1] - gap)
    out = [0.0] * len(values)
    for k, i in enumerate(order):
        out[i] = pos[k]
    return out


def plot_pareto(df: pd.DataFrame) -> Any:
    """Safety against helpfulness (95% CIs) for the loop, the weight sweep, the ablations and the static
    baseline; over-refusal as colour. Labels (weight-sweep points by their weights, the others by name) stand
    in a column right of the axes, in the order of the points' safety, with a line to each point, so no two
    labels overlap however close the points are."""
    import matplotlib.pyplot as plt

    sub = df[df["group"].isin(PARETO_GROUPS)].dropna(subset=["safety", "helpfulness"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    _errorbars(ax, sub, "helpfulness", "safety")
    markers = {"base": "X", "loop": "*", "weights": "o", "objective": "s", "static": "^"}
    points = None
    for group, part in sub.groupby("group", sort=False):
        points = ax.scatter(part["helpfulness"], part["safety"], c=part["over_refusal"], cmap="viridis", vmin=0,
                            vmax=0.3, marker=markers[group], s=90, zorder=3, label=group, edgecolors="black")  # fmt: skip
    y0, y1 = ax.get_ylim()
    heights = spread_positions([(y - y0) / (y1 - y0) for y in sub["safety"]], gap=0.055, lo=0.02, hi=0.98)
    for (_, r), h in zip(sub.iterrows(), heights, strict=True):
        label = f"w_s={r['w_safety']:g}, w_h={r['w_helpful']:g}" if r["group"] == "weights" else r["name"]
        ax.annotate(label, (r["helpfulness"], r["safety"]), xytext=(1.03, h), textcoords="axes fraction",
                    fontsize=7, va="center", arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5})  # fmt: skip
    if points is not None:
        fig.colorbar(points, ax=ax, location="bottom", shrink=0.6, pad=0.14,
                     label="over-refusal rate (benign-but-sensitive prompts)")  # fmt: skip
    ax.set_xlabel(METRIC_LABELS["helpfulness"] + " on held-out benign prompts")
    ax.set_ylabel(METRIC_LABELS["safety"] + " on held-out harmful prompts")
    ax.set_title("Safety vs helpfulness (bars: 95% CI)")
    ax.legend(fontsize=7, loc="best", title="marker: group", title_fontsize=7)
    fig.subplots_adjust(right=0.72)
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
