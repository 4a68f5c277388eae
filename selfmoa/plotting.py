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
    """Closed-loop curves: held-out safety/helpfulness (with CIs) and red-team attack success and diversity.

    With a `seed` column holding several seeds, every seed is drawn as a thin line and the mean over seeds as
    a thick one (shaded: the per-seed prompt CIs are not shown; the seeds themselves are the spread).
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    quantities = list(dict.fromkeys(df["quantity"]))
    palette = dict(zip(quantities, sns.color_palette(n_colors=len(quantities)), strict=True))
    seeds = list(dict.fromkeys(df["seed"])) if "seed" in df else []
    if len(seeds) > 1:
        for (quantity, _), sub in df.groupby(["quantity", "seed"], sort=False):
            ax.plot(sub["iteration"], sub["value"], color=palette[quantity], alpha=0.35, linewidth=0.8)
        mean = df.groupby(["quantity", "iteration"], sort=False)["value"].mean().reset_index()
        sns.lineplot(data=mean, x="iteration", y="value", hue="quantity", palette=palette, marker="o", ax=ax)
        ax.set_title(f"Self-MOA closed loop ({len(seeds)} seeds: thin lines; mean: thick)")
    else:
        sns.lineplot(data=df, x="iteration", y="value", hue="quantity", palette=palette, marker="o", ax=ax)
        ci = df.dropna(subset=["lo", "hi"])
        for quantity, sub in ci.groupby("quantity"):
            ax.fill_between(
                sub["iteration"], sub["lo"].astype(float), sub["hi"].astype(float), color=palette[quantity], alpha=0.15
            )
        ax.set_title("Self-MOA closed loop")
    ax.set_xlabel("policy after k rounds (red-team points: round k's attacks against it)")
    ax.set_ylabel("rate / score")
    ax.set_ylim(0, 1.05)
    ax.set_xticks(sorted(df["iteration"].unique()))
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def _bars_with_seeds(ax: Any, df: pd.DataFrame, group: str, models: list[str]) -> None:
    """Grouped bars (mean rows, CI error bars) per `group` value and model, with each seed's value as a dot."""
    import numpy as np
    import seaborn as sns

    groups = list(dict.fromkeys(df[group]))
    width = 0.8 / max(1, len(models))
    palette = sns.color_palette("colorblind", n_colors=len(models))
    x = np.arange(len(groups))
    for j, model in enumerate(models):
        mean = df[(df["model"] == model) & (df["kind"] == "mean")].set_index(group).reindex(groups)
        pos = x - 0.4 + width * (j + 0.5)
        ax.bar(pos, mean["value"], width=width, color=palette[j], label=model)
        ax.errorbar(pos, mean["value"], yerr=[mean["value"] - mean["lo"], mean["hi"] - mean["value"]], fmt="none",
                    ecolor="black", capsize=3)  # fmt: skip
        seeds = df[(df["model"] == model) & (df["kind"] == "seed")]
        ax.scatter(pos[[groups.index(g) for g in seeds[group]]], seeds["value"], color="black", s=10, zorder=3)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=30, ha="right", fontsize=8)


def plot_per_set(df: pd.DataFrame) -> Any:
    """Per held-out set: safety on each harmful set and over-refusal on each benign set, base vs final (bars:
    mean over seeds with the seed-level 95% CI; dots: each seed), frame from `study_report.per_set_frame`."""
    import matplotlib.pyplot as plt

    metrics = [m for m in ("safety", "over_refusal") if (df["metric"] == m).any()]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.8), squeeze=False)
    models = list(dict.fromkeys(df["model"]))
    for ax, metric in zip(axes[0], metrics, strict=True):
        _bars_with_seeds(ax, df[df["metric"] == metric], "prompt_set", models)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(METRIC_LABELS[metric])
        ax.set_title("harmful sets" if metric == "safety" else "benign-but-sensitive sets", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Per held-out set (bars: mean over seeds, 95% seed-and-prompt CI; dots: seeds)")
    fig.tight_layout()
    return fig


GAIN_LABELS = {
    "safety_gain_points": "safety gain (points)",
    "over_refusal_change_points": "over-refusal change (points)",
    "helpfulness_change": "helpfulness change (score)",
}


def plot_seed_spread(df: pd.DataFrame) -> Any:
    """Per-seed paired changes of the final policy against base (dots) with their mean and 95% interval
    (diamond and line), on all prompts and per set; one panel per quantity (`study_report.seed_spread_frame`)."""
    import matplotlib.pyplot as plt

    quantities = list(dict.fromkeys(df["quantity"]))
    fig, axes = plt.subplots(1, len(quantities), figsize=(4.5 * len(quantities), 3.8), squeeze=False)
    for ax, quantity in zip(axes[0], quantities, strict=True):
        sub = df[df["quantity"] == quantity]
        sets = list(dict.fromkeys(sub["prompt_set"]))
        y = {s: -i for i, s in enumerate(sets)}
        mean = sub[sub["kind"] == "mean"]
        ax.hlines([y[s] for s in mean["prompt_set"]], mean["lo"], mean["hi"], color="black", linewidth=1.5)
        ax.scatter(mean["value"], [y[s] for s in mean["prompt_set"]], marker="D", color="black", s=30, zorder=3)
        seeds = sub[sub["kind"] == "seed"]
        ax.scatter(seeds["value"], [y[s] + 0.15 for s in seeds["prompt_set"]], color="tab:orange", s=18, zorder=4)
        ax.axvline(0, color="grey", linestyle="--", linewidth=1)
        ax.set_yticks(list(y.values()))
        ax.set_yticklabels(sets, fontsize=8)
        ax.set_xlabel(GAIN_LABELS.get(quantity, quantity))
    fig.suptitle("Seed spread: final - base per seed (dots), mean and 95% CI (diamond, line)")
    fig.tight_layout()
    return fig


def plot_capability(df: pd.DataFrame) -> Any:
    """Capability per lm-eval task (primary metric), base vs final: bars are means over seeds with their 95%
    interval (seed-and-item bootstrap, or lm-eval's stderr), dots each seed (`study_report.capability_frame`)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5.0, 1.1 * df["task"].nunique() + 2), 3.8))
    _bars_with_seeds(
        ax, df.assign(task=df["task"] + " (" + df["metric"] + ")"), "task", list(dict.fromkeys(df["model"]))
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title("Capability, lm-eval zero-shot (bars: 95% CI; dots: seeds)")
    ax.legend(fontsize=8)
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


PARETO_GROUPS = ("base", "loop", "weights", "objective", "static", "loop_weights", "selfmoa_cap", "static_schedule")
PARETO_MARKERS = {"base": "X", "loop": "*", "weights": "o", "objective": "s", "static": "^", "loop_weights": "o",
                  "selfmoa_cap": "P", "static_schedule": "^"}  # fmt: skip


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
    """Safety against helpfulness (95% CIs) of the models in `df` (`report.pareto_frame`: with loop variants,
    the full-loop results: the main run, the loop weight sweep, capped loops, the static schedule); over-refusal
    as colour. Labels (weight points by their weights, the others by name) stand in a column right of the axes,
    in the order of the points' safety, with a line to each point, so no two labels overlap however close the
    points are."""
    import matplotlib.pyplot as plt

    sub = df[df["group"].isin(PARETO_GROUPS)].dropna(subset=["safety", "helpfulness"]).reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8.5, 5.5))
    _errorbars(ax, sub, "helpfulness", "safety")
    markers = PARETO_MARKERS
    points = None
    for group, part in sub.groupby("group", sort=False):
        points = ax.scatter(part["helpfulness"], part["safety"], c=part["over_refusal"], cmap="viridis", vmin=0,
                            vmax=0.3, marker=markers[group], s=90, zorder=3, label=group, edgecolors="black")  # fmt: skip
    y0, y1 = ax.get_ylim()
    heights = spread_positions([(y - y0) / (y1 - y0) for y in sub["safety"]], gap=0.055, lo=0.02, hi=0.98)
    for (_, r), h in zip(sub.iterrows(), heights, strict=True):
        label = r["name"]
        if r["group"] == "weights":
            label = f"w_s={r['w_safety']:g}, w_h={r['w_helpful']:g} (1 round)"
        elif r["group"] == "loop_weights" or (r["name"] == "selfmoa" and pd.notna(r["w_safety"])):
            label = f"{r['name']}: w_s={r['w_safety']:g}, w_h={r['w_helpful']:g} (whole loop)"
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


def plot_data_efficiency(df: pd.DataFrame, base_safety: float, ratio: dict[str, Any] | None = None) -> Any:
    """Held-out safety and over-refusal (and capability, where measured) against TOTAL training pairs, one
    line per curve of `report.efficiency_curves` (shaded: the frame's 95% intervals: prompts, or seeds and
    prompts in a cross-seed frame); the title carries the static/Self-MOA pairs ratio when given."""
    import matplotlib.pyplot as plt

    panels = [k for k in ("safety", "over_refusal", "capability") if k in df and df[k].notna().any()]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4), squeeze=False)
    positive = df.loc[df["n_pairs"] > 0, "n_pairs"]
    for ax, metric in zip(axes[0], panels, strict=True):
        for label, part in df.groupby("curve", sort=False):
            part = part.dropna(subset=[metric]).sort_values("n_pairs")
            style = "--" if "one round" in str(label) else "-"
            line = ax.plot(part["n_pairs"], part[metric].astype(float), marker="o", linestyle=style, label=label)[0]
            band = part.dropna(subset=[f"{metric}_lo", f"{metric}_hi"])
            ax.fill_between(band["n_pairs"], band[f"{metric}_lo"].astype(float), band[f"{metric}_hi"].astype(float),
                            color=line.get_color(), alpha=0.12)  # fmt: skip
        if metric == "safety":
            ax.axhline(base_safety, color="grey", linestyle=":", linewidth=1, label="starting policy")
        ax.set_xscale("symlog", linthresh=float(positive.min()) if len(positive) else 1.0)
        ax.set_xlabel("total preference pairs trained on (symlog)")
        ax.set_ylabel(METRIC_LABELS.get(metric, "capability (mean primary accuracy)"))
        ax.set_ylim(0, 1.05)
    axes[0][0].legend(fontsize=7, loc="best")
    title = "Data efficiency (solid: both on the loop's schedule; dashed: one round; shaded: 95% CI)"
    if ratio and ratio.get("ratio") is not None:
        ci = ratio.get("ci") or [None, None]
        hi = "unbounded" if ci[1] is None else f"{ci[1]:.2f}"
        title += f"\nstatic/Self-MOA pairs ratio {ratio['ratio']:.2f}" + (
            f" [{ci[0]:.2f}, {hi}]" if ci[0] is not None else ""
        )
    elif ratio:
        title += f"\npairs ratio undefined: {ratio.get('note')}"
    fig.suptitle(title, fontsize=9)
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
