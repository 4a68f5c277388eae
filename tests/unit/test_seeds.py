"""Seed-level statistics: per-seed means, their mean, and a CI that widens with seed variance."""

from __future__ import annotations

import math

import numpy as np
import pytest

from selfmoa.evaluation import bootstrap_ci
from selfmoa.seeds import hierarchical_bootstrap_ci, paired_differences, paired_gain_summary, seed_summary


def test_seed_summary_reports_each_seed_and_their_mean() -> None:
    out = seed_summary({0: [1, 1, 0, 0], 1: [1, 1, 1, 1], 2: [0, 0, 0, None]}, n_boot=200)
    assert out["per_seed"] == {0: 0.5, 1: 1.0, 2: 0.0}
    assert out["mean"] == pytest.approx(0.5)
    assert out["n_seeds"] == 3 and out["n_items"] == 11
    assert out["min"] == 0.0 and out["max"] == 1.0
    assert out["ci"][0] <= out["mean"] <= out["ci"][1]


def test_one_seed_reduces_to_the_prompt_bootstrap_width() -> None:
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, size=200).astype(float)
    lo, hi = hierarchical_bootstrap_ci([x], n_boot=2000, seed=3)
    plo, phi = bootstrap_ci(x, n_boot=2000, seed=3)
    assert hi - lo == pytest.approx(phi - plo, rel=0.25)


def test_seed_variance_widens_the_interval() -> None:
    rng = np.random.default_rng(0)
    same = [rng.binomial(1, 0.5, 100) for _ in range(3)]
    spread = [rng.binomial(1, p, 100) for p in (0.2, 0.5, 0.8)]
    w_same = np.diff(hierarchical_bootstrap_ci(same, n_boot=1000))[0]
    w_spread = np.diff(hierarchical_bootstrap_ci(spread, n_boot=1000))[0]
    assert w_spread > 2 * w_same


def test_empty_input_gives_nan_and_bad_n_boot_is_refused() -> None:
    assert all(math.isnan(v) for v in hierarchical_bootstrap_ci([[], [None]]))
    with pytest.raises(ValueError, match="n_boot"):
        hierarchical_bootstrap_ci([[1.0]], n_boot=0)


def test_paired_gains_use_shared_items_only() -> None:
    assert paired_differences({"a": 1.0, "b": 0.0, "c": None}, {"a": 0.0, "b": 0.0, "c": 1.0, "d": 1.0}) == [1.0, 0.0]
    out = paired_gain_summary({0: {"a": 1, "b": 1}, 1: {"a": 1, "b": 0}}, {0: {"a": 0, "b": 0}, 1: {"a": 0, "b": 0}})
    assert out["per_seed"] == {0: 1.0, 1: 0.5}
    assert out["mean"] == pytest.approx(0.75)
