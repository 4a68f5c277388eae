"""Figures of the study: pure `plot_*(df) -> Figure` functions with seaborn, and `save` (png + json sidecar)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

METRIC_LABELS = {
    "safety": "safety (1 - harmful compliance)",
    "overrefusal": "over-refusal rate",
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
    sns.lineplot(data=df, x="iteration", y="value", hue="quantity", marker="o", ax=ax)
    ci = df.dropna(subset=["lo", "hi"])
    for _, sub in ci.groupby("quantity"):
        ax.fill_between(sub["iteration"], sub["lo"].astype(float), sub["hi"].astype(float), alpha=0.15)
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
    lines = ["| model | safety | over-refusal | helpfulness | pairs |", "|---|---|---|---|---|"]
    for name, m in models.items():
        cells = []
        for k in ("safety", "overrefusal", "helpfulness"):
            lo, hi = m[f"{k}_ci"]
            cells.append(f"{m[k]:.3f} [{lo:.3f}, {hi:.3f}]")
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {m.get('n_pairs') if m.get('n_pairs') is not None else '-'} |"
        )
    return "\n".join(lines)
