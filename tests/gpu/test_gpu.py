"""Checks that need a CUDA GPU (skipped without one)."""

import pytest

from selfmoa import models
from selfmoa.config import ModelSpec

pytestmark = pytest.mark.gpu


def test_4bit_policy_on_gpu(cache_dir: str) -> None:
    from selfmoa.generation import generate

    model, tok = models.load_model(ModelSpec(load_in_4bit=True, device="cuda"), cache_dir)
    assert model.device.type == "cuda"
    out = generate(model, tok, ["What is the capital of France?"], max_new_tokens=8, progress=False)
    assert "Paris" in out[0][0]
