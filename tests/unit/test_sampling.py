"""Stage 03 helpers: prompt rows, one row per sample, and the stage's metrics."""

from __future__ import annotations

from types import SimpleNamespace

from selfmoa import sampling


def test_prompts_samples_and_metrics() -> None:
    attacks = [{"id": "a1", "prompt": "attack", "category": "cyber"}]
    benign = [{"id": "b1", "prompt": "bread?"}, {"id": "b2", "prompt": "tea?", "category": "food"}]
    prompts = sampling.stage_prompts(attacks, benign)
    assert [p["kind"] for p in prompts] == ["harmful", "benign", "benign"]
    assert prompts[0] == {"prompt_id": "a1", "prompt": "attack", "kind": "harmful", "category": "cyber"}
    assert prompts[1]["category"] is None
    responder = SimpleNamespace(respond=lambda ps: [[f"{p} 0", ""] for p in ps])
    samples = sampling.sample(responder, prompts)
    assert len(samples) == 6 and samples[1] == {**prompts[0], "sample": 1, "response": ""}
    m = sampling.sample_metrics(prompts, samples)
    assert m == {"n_prompts": 3, "n_harmful": 1, "n_benign": 2, "n_contrast": 0, "n_samples": 6, "empty_fraction": 0.5}
