"""The policy's identity in generation cache keys survives merging its adapters."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

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
