"""Data efficiency: pairs a curve needs to reach a safety target, the static/Self-MOA pairs ratio, its interval.

Pure functions. A *curve* is a list of (total pairs, held-out safety) points of one pair source trained on the
loop's schedule (`selfmoa.variants`: static curated pairs or the loop's own pairs, T rounds each); both curves
start at the starting policy (0 pairs). The ratio is the paper's "up to 11x less data": pairs the static
baseline needs to reach Self-MOA's best safety over the pairs Self-MOA needed, each interpolated linearly
between measured sizes. It is undefined, and said so, when the static curve never reaches the target within
its sizes (then a lower bound is given) or when Self-MOA is no safer than the starting policy.

The interval resamples seeds, then held-out harmful prompts within each drawn seed (the prompts are the same
for every model of a seed, so the points of one resample are paired), and recomputes both curves and the
ratio. Resamples where the static curve never reaches the target count as an unbounded ratio, so the upper
end is reported as unbounded when more than (1 - level) / 2 of them do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def pairs_to_reach(curve: Sequence[tuple[float, float]], target: float) -> float | None:
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
    static_curve: Sequence[tuple[float, float]], selfmoa_curve: Sequence[tuple[float, float]]
) -> dict[str, Any]:
    """How many more pairs the static baseline needs than Self-MOA to reach Self-MOA's best safety.

    Returns ratio (None when undefined, with a `note` saying why; when the static baseline never reaches the
    target, `lower_bound` = largest static size / Self-MOA's pairs), target_safety, selfmoa_pairs and
    static_pairs.
    """
    if not static_curve or not selfmoa_curve:
        return {"ratio": None, "note": "needs both a static and a Self-MOA curve"}
    target = max(s for _, s in selfmoa_curve)
    n_self = pairs_to_reach(selfmoa_curve, target)
    n_static = pairs_to_reach(static_curve, target)
    out: dict[str, Any] = {"target_safety": target, "selfmoa_pairs": n_self, "static_pairs": n_static}
    if not n_self:
        return out | {"ratio": None, "note": "Self-MOA is no safer than the starting policy: no target to reach"}
    if n_static is None:
        largest = max(n for n, _ in static_curve)
        return out | {
            "ratio": None,
            "lower_bound": largest / n_self,
            "note": f"the static baseline never reached safety {target:.3f} within {largest:g} pairs",
        }
    return out | {"ratio": n_static / n_self, "note": "linear interpolation between measured sizes"}


def _point_means(points: Sequence[Mapping[str, Any]], seeds: np.ndarray, prompts: list[np.ndarray]) -> list[float]:
    out = []
    for p in points:
        per_seed = [
            np.nanmean(np.asarray(p["safe"][s], dtype=float)[idx]) for s, idx in zip(seeds, prompts, strict=True)
        ]
        out.append(float(np.nanmean(per_seed)))
    return out


def _check_points(points: Sequence[Mapping[str, Any]], n_seeds: int, sizes: list[int], name: str) -> None:
    for p in points:
        if len(p["safe"]) != n_seeds:
            raise ValueError(f"{name} point at {p['n_pairs']} pairs has {len(p['safe'])} seeds, expected {n_seeds}")
        if [len(x) for x in p["safe"]] != sizes:
            raise ValueError(f"{name} point at {p['n_pairs']} pairs: prompts per seed differ from the other points")


def ratio_interval(
    static_points: Sequence[Mapping[str, Any]],
    selfmoa_points: Sequence[Mapping[str, Any]],
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """`pairs_ratio` of two curves with a bootstrap interval over seeds and prompts.

    Args:
        static_points, selfmoa_points: one dict per curve point: `n_pairs` (total pairs, mean over seeds) and
            `safe` (one array per seed of per-prompt safe flags on the held-out harmful prompts, 1 safe, 0 unsafe,
            NaN unscored; seeds in the same order for every point, prompts in the same order within a seed).
        n_boot: resamples (>= 1).
        seed: seed of the resampling.
        level: coverage of the interval.

    Returns:
        `pairs_ratio` of the mean curves plus n_seeds, ci ([lo, hi]; hi None when unbounded, both None when the
        ratio itself or every resample is undefined), defined_fraction (resamples with a finite ratio) and unreached_fraction (resamples
        where the static curve never reaches the target).
    """
    if not static_points or not selfmoa_points:
        return pairs_ratio([], [])
    n_seeds = len(selfmoa_points[0]["safe"])
    sizes = [len(x) for x in selfmoa_points[0]["safe"]]
    _check_points(static_points, n_seeds, sizes, "static")
    _check_points(selfmoa_points, n_seeds, sizes, "Self-MOA")
    all_seeds = np.arange(n_seeds)
    full = [np.arange(n) for n in sizes]

    def curves(seeds: np.ndarray, prompts: list[np.ndarray]) -> tuple[list, list]:
        st = list(zip((p["n_pairs"] for p in static_points), _point_means(static_points, seeds, prompts), strict=True))
        sm = list(
            zip((p["n_pairs"] for p in selfmoa_points), _point_means(selfmoa_points, seeds, prompts), strict=True)
        )
        return st, sm

    out = pairs_ratio(*curves(all_seeds, full)) | {"n_seeds": n_seeds}
    rng = np.random.default_rng(seed)
    ratios: list[float] = []
    unreached = 0
    for _ in range(n_boot):
        seeds = rng.integers(0, n_seeds, n_seeds) if n_seeds > 1 else all_seeds
        prompts = [rng.integers(0, sizes[s], sizes[s]) for s in seeds]
        r = pairs_ratio(*curves(seeds, prompts))
        if r["ratio"] is not None:
            ratios.append(r["ratio"])
        elif r.get("static_pairs") is None and r.get("selfmoa_pairs"):
            ratios.append(math.inf)
            unreached += 1
    tail = (1 - level) / 2
    ci: list[float | None] = [None, None]
    if ratios and out["ratio"] is not None:  # no interval around an undefined ratio
        arr = np.array(ratios)  # no interpolation between an infinite and a finite draw: the nearest outer draws
        lo, hi = np.quantile(arr, tail, method="lower"), np.quantile(arr, 1 - tail, method="higher")
        ci = [None if math.isinf(lo) else float(lo), None if math.isinf(hi) else float(hi)]
    return out | {
        "ci": ci,
        "ci_level": level,
        "defined_fraction": (len(ratios) - unreached) / n_boot,
        "unreached_fraction": unreached / n_boot,
        "n_boot": n_boot,
    }
