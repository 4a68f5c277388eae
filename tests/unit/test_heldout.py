"""Stage 07 bookkeeping: per-model summaries, the loop table, paired tests and the result documents."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from selfmoa import artifacts, heldout
from selfmoa.config import RunConfig


def _records(unsafe: int) -> list[dict]:
    rows = [
        {"prompt_set": "hb", "is_harmful": True, "safety": 0.1 if i < unsafe else 0.9, "refused": False}
        for i in range(4)
    ]
    rows += [
        {"prompt_set": "or", "is_harmful": False, "safety": 1.0, "refused": i == 0, "helpfulness": 0.5}
        for i in range(4)
    ]
    return [{**r, "safety_judge": "S", "helpfulness_judge": "H", "reference_similarity": None} for r in rows]


def _ctx(tmp_path: Path, iterations: int = 1) -> SimpleNamespace:
    cfg = RunConfig(iterations=iterations)
    return SimpleNamespace(
        cfg=cfg,
        seed=0,
        path=lambda name: tmp_path / name,
        upstream_dir=lambda stage, t=None: tmp_path / f"iter{t}" / stage,
    )


def test_summaries_paired_loop_rows_and_documents(tmp_path: Path) -> None:
    ctx = _ctx(tmp_path)
    records = {"base": _records(unsafe=3), "iter1": _records(unsafe=1)}
    assert heldout.model_names(ctx.cfg) == list(records)
    for name in records:
        artifacts.write_json(tmp_path / f"perplexity_{name}.json", {"reference_perplexity": 12.5})
    summary = heldout.summaries(ctx, records)
    assert summary["base"]["safety"] == pytest.approx(0.25) and summary["iter1"]["safety"] == pytest.approx(0.75)
    assert summary["iter1"]["over_refusal"] == pytest.approx(0.25) and summary["base"]["reference_perplexity"] == 12.5
    assert list(heldout.headline_frame(summary).columns) == heldout.HEADLINE_COLUMNS
    paired = heldout.final_vs_base(records, ctx.cfg, seed=0)
    assert paired["unsafe"]["a_only"] == 2 and paired["over_refusal"]["n"] == 4
    stage_metrics = {
        "02_redteam": {"candidate_asr": 0.6, "kept_diversity": 0.4, "n_kept": 8},
        "04_judge": {"attack_success_rate": 0.5},
        "05_pairs": {"n_pairs": 12, "sources": {"sampled": 12}},
        "06_align": {"seconds": 3.0},
    }
    for stage, m in stage_metrics.items():
        artifacts.write_json(tmp_path / "iter0" / stage / "metrics.json", m)
    rows = heldout.loop_rows(ctx, summary)
    assert rows[0]["redteam_asr"] == 0.5 and rows[0]["n_pairs"] == 12 and rows[0]["heldout_after"] is summary["iter1"]
    assert heldout.loop_frame(rows)["heldout_safety"].tolist() == [0.75]
    docs = heldout.documents(ctx.cfg, {"hb": 4, "or": 4}, summary, paired, rows, records)
    assert docs["summary.json"]["judges"] == {"safety": "S", "helpfulness": "H"}
    assert docs["base.json"]["safety"] == summary["base"]["safety"] and docs["loop.json"]["iterations"] == rows
    by_set = heldout.by_set(records, ctx.cfg, 0)
    assert set(by_set["model"]) == {"base", "iter1"}
    published = heldout.published(docs, by_set, "judges")
    assert sorted(published) == ["base.json", "eval.json", "eval_by_set.csv", "judges.csv", "loop.json"]


def test_selected_models_names_base_final_and_rounds() -> None:
    from types import SimpleNamespace

    from selfmoa.heldout import selected_models

    cfg = SimpleNamespace(iterations=3)
    assert selected_models(cfg) == ["base", "iter1", "iter2", "iter3"]
    assert selected_models(cfg, ["final", "base"]) == ["base", "iter3"]
    assert selected_models(cfg, ["iter2"]) == ["iter2"]


def test_judge_validation_is_computed_once_per_judge_setting(tmp_path, monkeypatch) -> None:
    """The seeds of a study share one judge validation (cached by judge settings and code); a change recomputes it."""
    from types import SimpleNamespace

    import pandas as pd

    from selfmoa import config as C
    from selfmoa import heldout
    from selfmoa.judges import validation
    from selfmoa.paths import CONFIGS

    calls = []

    def fake_validate(cfg, lm):
        calls.append(cfg.seed)
        return pd.DataFrame({"judge": ["refusal"], "accuracy": [0.75 + len(calls) / 100]})

    monkeypatch.setattr(validation, "validate_judges", fake_validate)

    def table(seed: int, *extra: str) -> pd.DataFrame:
        cfg = C.load(CONFIGS / "cpu.yaml", [f"cache_dir={tmp_path / 'cache'}", f"seed={seed}", *extra])
        folder = tmp_path / f"run{seed}{len(extra)}{len(calls)}"
        ctx = SimpleNamespace(cfg=cfg, complete=False, path=lambda name: folder / name)
        out = heldout.judge_table(ctx, None)
        assert pd.read_csv(folder / "judges.csv").equals(out)
        return out

    first = table(0)
    assert table(1).equals(first) and calls == [0]  # every reference row (n_judge_validation 0): seed-free
    assert not table(1, "judge.unsafe_below=0.4").equals(first) and calls == [0, 1]
    table(2, "eval.n_judge_validation=50")
    table(3, "eval.n_judge_validation=50")  # the subsample is drawn with eval.sample_seed: not per training seed
    assert calls == [0, 1, 2]
    table(3, "eval.n_judge_validation=50", "eval.sample_seed=7")
    assert calls == [0, 1, 2, 3]
