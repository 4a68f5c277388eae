"""Shared fixtures: the real embedded SmolLM2 (loaded once per session) and marker handling."""

from __future__ import annotations

import pytest

from selfmoa.config import ModelSpec
from selfmoa.paths import ROOT

CACHE_DIR = ROOT / "data" / "cache"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked gpu when no CUDA device is visible."""
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    if has_gpu:
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def cache_dir() -> str:
    """The repository's model cache (the embedded model is materialized there once)."""
    return str(CACHE_DIR)


@pytest.fixture(scope="session")
def smollm(cache_dir: str):
    """(model, tokenizer) of the real SmolLM2-135M-Instruct in fp32 (exact numbers)."""
    from selfmoa.models import load_model

    return load_model(ModelSpec(dtype="float32"), cache_dir)
