"""The committed reference results are complete, well-formed, and what the README reports."""

from __future__ import annotations

import json
import re

import pytest

from selfmoa.evaluation import canonical_names
from selfmoa.paths import ROOT

RESULTS = ROOT / "data" / "results" / "cpu"
README = (ROOT / "README.md").read_text()

pytestmark = pytest.mark.skipif(not (RESULTS / "summary.json").is_file(), reason="no committed cpu reference run")


def test_summary_has_the_documented_shape() -> None:
    s = canonical_names(json.loads((RESULTS / "summary.json").read_text()))  # older files: older metric names
    assert s["profile"] == "cpu" and s["eval_sets"] and all(n > 0 for n in s["eval_sets"].values())
    assert {"base", "selfmoa"} <= set(s["models"])  # baselines: whatever the profile's study section trains
    for m in s["models"].values():
        for k in ("safety", "over_refusal", "helpfulness"):
            lo, hi = m[f"{k}_ci"]
            assert 0.0 <= lo <= m[k] <= hi <= 1.0
    base, sel = s["models"]["base"], s["models"]["selfmoa"]
    assert s["safety_gain_points"] == pytest.approx(100 * (sel["safety"] - base["safety"]), abs=0.01)
    change = 100 * (sel["over_refusal"] - base["over_refusal"])
    assert s["over_refusal_change_points"] == pytest.approx(change, abs=0.01)
    assert s["helpfulness_change"] == pytest.approx(sel["helpfulness"] - base["helpfulness"], abs=1e-4)


def test_multi_seed_summary_reports_every_seed_and_set() -> None:
    """A summary written by a study (`seeds`, `per_seed`, `per_set`, `gains`); an older single-seed file has none."""
    s = canonical_names(json.loads((RESULTS / "summary.json").read_text()))
    if "per_set" not in s:
        pytest.skip("single-seed summary.json from before the multi-seed report")
    seeds = [str(k) for k in s["seeds"]]
    assert s["n_seeds"] == len(seeds) >= 1 and list(s["per_seed"]) == seeds
    for name, _metric in (("safety_gain_points", "safety"), ("over_refusal_change_points", "over_refusal")):
        g = s["gains"][name]
        assert g["ci"][0] <= g["mean"] <= g["ci"][1] and sorted(g["per_seed"]) == sorted(seeds)
        assert s[name] == pytest.approx(g["mean"], abs=0.01)
    assert set(s["per_set"]) == set(s["eval_sets"])
    for where, entry in s["per_set"].items():
        metric = "safety" if entry["kind"] == "harmful" else "over_refusal"
        for model in ("base", "selfmoa"):
            m = entry[metric]["models"][model]
            assert m["ci"][0] <= m["mean"] <= m["ci"][1] and sorted(m["per_seed"]) == sorted(seeds), (where, model)
            assert all(where in s["per_seed"][k][model]["per_set"] for k in seeds)


def test_readme_shows_the_committed_tables_and_figures() -> None:
    for name in ("headline.md", "tables.md"):
        for block in (RESULTS / name).read_text().strip().split("\n\n"):
            if block.startswith("|"):
                assert block in README, f"README is out of date with data/results/cpu/{name}"
    for png in re.findall(r"figures/([\w-]+\.png)", README):
        assert (ROOT / "figures" / png).is_file(), png
        assert (ROOT / "figures" / png.replace(".png", ".json")).is_file(), f"{png} has no json sidecar"
