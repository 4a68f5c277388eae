"""The vLLM backend on a real engine (needs a CUDA GPU and `pip install vllm`; skipped otherwise)."""

from __future__ import annotations

import pytest

from selfmoa import models, vllm_backend
from selfmoa.config import ModelSpec, PolicySpec
from selfmoa.generation import GenerationCache

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def served(cache_dir: str):
    pytest.importorskip("vllm")
    spec = PolicySpec(device="cuda", backend="vllm", vllm_gpu_memory=0.3)
    source = models.resolve(spec, cache_dir)
    tok = models.load_tokenizer(ModelSpec(), cache_dir)
    yield vllm_backend.VllmPolicy.from_spec(spec, source), tok
    vllm_backend.release()


def test_vllm_greedy_answers_like_transformers(served, cache_dir: str) -> None:
    from selfmoa.generation import generate

    policy, tok = served
    prompts = ["What is the capital of France?", "Name a primary colour."]
    out = vllm_backend.generate_vllm(policy, tok, prompts, max_new_tokens=16, num_return_sequences=2, progress=False)
    assert [len(r) for r in out] == [2, 2] and out[0][0] == out[0][1]
    assert "Paris" in out[0][0]
    model, _ = models.load_model(ModelSpec(device="cuda"), cache_dir)
    reference = generate(model, tok, prompts[:1], max_new_tokens=16, progress=False)
    assert "Paris" in reference[0][0]


def test_vllm_sampling_is_seeded_and_cached(served, tmp_path) -> None:
    policy, tok = served
    kw = {"max_new_tokens": 24, "temperature": 1.0, "top_p": 0.95, "num_return_sequences": 3, "progress": False}
    a = vllm_backend.generate_vllm(policy, tok, ["Tell me a fact."], seed=5, **kw)
    b = vllm_backend.generate_vllm(policy, tok, ["Tell me a fact.", "Say hi."], seed=5, **kw)
    assert a[0] == b[0] and len(set(a[0])) > 1  # per-prompt seeds: independent of the other prompts
    cache = GenerationCache(tmp_path / "gen.sqlite")
    first = vllm_backend.generate_vllm(policy, tok, ["Say hi."], seed=1, cache=cache, **kw)

    class NoEngine:
        def generate(self, *args, **kwargs):
            raise AssertionError("a cached answer went to the engine")

    again = vllm_backend.generate_vllm(policy, tok, ["Say hi."], seed=1, cache=cache, llm=NoEngine(), **kw)
    assert again == first
