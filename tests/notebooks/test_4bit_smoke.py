"""The 4-bit (NF4, bitsandbytes on the CPU) policy path through every notebook of the smoke profile.

Covers 4-bit loading and generation, QLoRA training (06_align and the 07b variant), and the merged checkpoints
a 4-bit policy is loaded from (`<run>/merged/iter<t>`, keyed by the adapter chain). One study variant (the
static baseline) keeps 07b's cost down; the variant sweeps add nothing to the 4-bit path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from selfmoa import artifacts, pipeline, policy
from selfmoa.config import load
from selfmoa.generation import model_fingerprint
from selfmoa.paths import CONFIGS

SMOKE = CONFIGS / "smoke.yaml"


@pytest.mark.slow
def test_4bit_policy_through_every_notebook(tmp_path: Path) -> None:
    overrides = [
        f"runs_dir={tmp_path}",
        "policy.load_in_4bit=true",
        "study.weight_sweep=[]",
        "study.label_noise=[]",
        "study.schedule_sizes=[]",
    ]
    summary = pipeline.run(SMOKE, "smoke4bit", overrides)
    cfg = load(SMOKE, overrides)
    steps = pipeline.plan(cfg)
    assert [s["step"] for s in summary["steps"]] == [s.label for s in steps] and all(s["ran"] for s in summary["steps"])
    run = tmp_path / "smoke4bit"
    for step in steps:
        assert artifacts.read_manifest(run, step.stage, step.iteration) is not None, step.label

    final = run / "merged" / f"iter{cfg.iterations}"  # the aligned policy that 07_evaluate loaded in 4-bit
    assert (final / "config.json").is_file() and (final / policy.MERGE_KEY).is_file()
    chain = policy.adapter_chain(run, cfg.iterations)
    assert policy.adapter_ids(chain)[-1] in (final / policy.MERGE_KEY).read_text()
    assert any(p.name.startswith("iter0+") for p in (run / "merged").iterdir())  # the 07b variant, merged too

    model, _ = policy.load_policy(cfg, run, cfg.iterations)
    assert model.is_loaded_in_4bit
    # the generation cache tells the 4-bit policy apart from the full-precision one with the same adapters
    full, _ = policy.load_policy(load(SMOKE, overrides[:1]), run, cfg.iterations)
    assert model_fingerprint(model) != model_fingerprint(full)
    base4, _ = policy.load_policy(cfg, run, 0, upto_reset_only=True)
    base, _ = policy.load_policy(load(SMOKE, overrides[:1]), run, 0, upto_reset_only=True)
    assert base4.is_loaded_in_4bit and model_fingerprint(base4) != model_fingerprint(base)
