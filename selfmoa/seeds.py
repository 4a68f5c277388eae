"""Statistics over training seeds (pure functions).

One training run is one trajectory: bf16 kernels, sampling and training noise all move it. The study
therefore trains the loop for several seeds on the *same* evaluation prompts and reports, for every
metric, the per-seed values, their mean and a 95% interval that includes seed variance: a two-level
(hierarchical) percentile bootstrap that first resamples seeds, then prompts within each drawn seed.
With one seed it reduces to the ordinary prompt bootstrap, so a one-seed interval is never mistaken
for a seed-level one (`n_seeds` is always reported beside it).

Gains are paired: within a seed, the final model and that seed's starting model answered the same
prompts, so the per-prompt differences are resampled together.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _clean(values: Sequence[Any]) -> np.ndarray:
    x = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
    return x[~np.isnan(x)]


def hierarchical_bootstrap_ci(
    groups: Sequence[Sequence[Any]], n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile CI of the mean over seeds of each seed's mean, resampling seeds, then items.

    Args:
        groups: one sequence of per-item values per seed (None/NaN dropped; empty groups ignored).
        n_boot: bootstrap resamples (>= 1).
        seed: random seed of the resampling (the interval is reproducible).
        level: coverage of the interval.

    Returns:
        (lo, hi), or (nan, nan) when no group has a value.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    clean = [g for g in (_clean(g) for g in groups) if g.size]
    if not clean:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    stats = np.empty(n_boot)
    for b in range(n_boot):
        picked = rng.integers(0, len(clean), size=len(clean))
        stats[b] = np.mean([clean[i][rng.integers(0, clean[i].size, size=clean[i].size)].mean() for i in picked])
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def seed_summary(values_by_seed: Mapping[int, Sequence[Any]], n_boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Per-seed means, their mean, spread and the seed-and-prompt bootstrap CI of one metric.

    Args:
        values_by_seed: training seed -> per-item values (e.g. 1.0 for an unsafe answer).

    Returns:
        {"mean", "ci": [lo, hi], "per_seed": {seed: mean}, "seed_sd", "min", "max", "n_seeds", "n_items"}.
    """
    per_seed = {int(s): float(_clean(v).mean()) for s, v in values_by_seed.items() if _clean(v).size}
    means = np.array(list(per_seed.values()), dtype=np.float64)
    lo, hi = hierarchical_bootstrap_ci(list(values_by_seed.values()), n_boot=n_boot, seed=seed)
    return {
        "mean": float(means.mean()) if means.size else float("nan"),
        "ci": [lo, hi],
        "per_seed": per_seed,
        "seed_sd": float(means.std(ddof=1)) if means.size > 1 else 0.0,
        "min": float(means.min()) if means.size else float("nan"),
        "max": float(means.max()) if means.size else float("nan"),
        "n_seeds": int(means.size),
        "n_items": int(sum(_clean(v).size for v in values_by_seed.values())),
    }


def paired_differences(final: Mapping[str, Any], start: Mapping[str, Any]) -> list[float]:
    """Per-item `final - start` over the item ids both share with a value (the pairing of one seed)."""
    out = []
    for key in sorted(set(final) & set(start)):
        a, b = final[key], start[key]
        if a is None or b is None or np.isnan(float(a)) or np.isnan(float(b)):
            continue
        out.append(float(a) - float(b))
    return out


def paired_gain_summary(
    final_by_seed: Mapping[int, Mapping[str, Any]],
    start_by_seed: Mapping[int, Mapping[str, Any]],
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, Any]:
    """`seed_summary` of per-item paired differences (final - start) within each seed.

    Args:
        final_by_seed, start_by_seed: training seed -> {item id: value}; seeds present in both are used.
    """
    seeds = sorted(set(final_by_seed) & set(start_by_seed))
    diffs = {s: paired_differences(final_by_seed[s], start_by_seed[s]) for s in seeds}
    return seed_summary(diffs, n_boot=n_boot, seed=seed)
