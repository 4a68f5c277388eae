"""The policy's identity in generation cache keys survives merging its adapters."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from selfmoa.generation import model_fingerprint
from selfmoa.policy import adapter_ids


def _adapter(folder: Path, content: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(content)
    return folder


def test_merged_policies_have_distinct_fingerprints(tmp_path: Path) -> None:
    a = _adapter(tmp_path / "iter0" / "adapter", b"round 0")
    b = _adapter(tmp_path / "iter1" / "adapter", b"round 1")
    base = SimpleNamespace(config=SimpleNamespace(_name_or_path="/cache/smollm2"), dtype="bfloat16")
    merged1 = SimpleNamespace(**vars(base), selfmoa_adapter_ids=adapter_ids([a]))
    merged2 = SimpleNamespace(**vars(base), selfmoa_adapter_ids=adapter_ids([a, b]))
    swapped = SimpleNamespace(**vars(base), selfmoa_adapter_ids=adapter_ids([b, a]))
    prints = {model_fingerprint(m) for m in (base, merged1, merged2, swapped)}
    assert len(prints) == 4  # merge order matters too
    before = adapter_ids([a])
    (a / "adapter_model.safetensors").write_bytes(b"retrained")
    assert adapter_ids([a]) != before  # a retrained adapter in the same folder is a new model


def test_release_memory_runs_anywhere() -> None:
    from selfmoa.models import release_memory

    block = bytearray(16 * 2**20)
    del block
    assert release_memory() is None


def test_responder_reads_each_purpose_from_the_config(tmp_path: Path, monkeypatch) -> None:
    """Lengths, batch sizes and temperatures come from `sampling` / `eval`, never from the caller."""
    from selfmoa import policy
    from selfmoa.config import EvalConfig, RunConfig, SamplingConfig

    cfg = RunConfig(
        cache_dir=str(tmp_path),
        sampling=SamplingConfig(k=3, temperature=0.7, top_p=0.9, max_new_tokens=11, batch_size=5),
        eval=EvalConfig(max_new_tokens=22, batch_size=7),
    )
    answer = policy.Responder.from_config(cfg, "m", "t", "answer", seed=4)
    assert (answer.max_new_tokens, answer.batch_size, answer.temperature, answer.k) == (11, 5, 0.0, 1)
    assert answer.cache is not None and answer.cache.path == tmp_path / "generations.sqlite"
    sample = policy.Responder.from_config(cfg, "m", "t", "sample", seed=4, cache=False)
    assert (sample.temperature, sample.top_p, sample.k, sample.cache) == (0.7, 0.9, 3, None)
    evaluate = policy.Responder.from_config(cfg, "m", "t", "eval", seed=4)
    assert (evaluate.max_new_tokens, evaluate.batch_size, evaluate.temperature) == (22, 7, 0.0)
    with pytest.raises(ValueError, match="answer"):
        policy.Responder.from_config(cfg, "m", "t", "guess", seed=4)

    calls = []

    def fake_generate(model, tok, prompts, **kw):
        calls.append(kw)
        return [[f"{p}-{j}" for j in range(kw["num_return_sequences"])] for p in prompts]

    monkeypatch.setattr(policy, "generate", fake_generate)
    assert sample.respond(["a"]) == [["a-0", "a-1", "a-2"]] and sample(["b"]) == ["b-0"]
    assert calls[0] | {"cache": None} == {
        "max_new_tokens": 11, "temperature": 0.7, "top_p": 0.9, "num_return_sequences": 3,
        "seed": 4, "batch_size": 5, "cache": None, "desc": "sample", "decoder": "reference",
    }  # fmt: skip
