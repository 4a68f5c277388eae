"""The merged checkpoint of a 4-bit (or vLLM) policy is keyed by its adapter chain, so it is never stale."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from selfmoa import config as C
from selfmoa import models, policy
from selfmoa.paths import CONFIGS


def _adapter(folder: Path, content: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text("{}")
    (folder / "adapter_model.safetensors").write_bytes(content)
    return folder


@pytest.fixture
def merges(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Replace the real merge by one that writes the chain's adapter contents as the 'weights'."""
    calls: list[list[str]] = []

    def merged(cfg: Any, chain: list[Path]) -> tuple[Any, Any]:
        weights = [(p / "adapter_model.safetensors").read_text() for p in chain]
        calls.append(weights)

        def save(target: Path) -> None:
            Path(target).mkdir(parents=True, exist_ok=True)
            (Path(target) / "config.json").write_text("{}")
            (Path(target) / "model.safetensors").write_text(json.dumps(weights))

        return SimpleNamespace(save_pretrained=save), SimpleNamespace(save_pretrained=lambda target: None)

    monkeypatch.setattr(policy, "_merged", merged)
    return calls


def _weights(target: Path) -> list[str]:
    return json.loads((target / "model.safetensors").read_text())


def test_merge_is_reused_until_an_adapter_is_retrained(tmp_path: Path, merges: list[list[str]]) -> None:
    cfg = C.load(CONFIGS / "smoke.yaml", ["policy.load_in_4bit=true"])
    reset = _adapter(tmp_path / "01_safety_reset" / "adapter", b"reset v1")
    align = _adapter(tmp_path / "iter0" / "06_align" / "adapter", b"align v1")
    target = tmp_path / "merged" / "iter1"
    assert policy.merged_checkpoint(cfg, target, [reset, align]) == target
    assert policy.merged_checkpoint(cfg, target, [reset, align]) == target
    assert merges == [["reset v1", "align v1"]]  # merged once, then reused
    (align / "adapter_model.safetensors").write_bytes(b"align v2")  # `--force` rerun retrained 06_align@0
    policy.merged_checkpoint(cfg, target, [reset, align])
    assert _weights(target) == ["reset v1", "align v2"] and len(merges) == 2
    policy.merged_checkpoint(cfg, target, [reset])  # a different chain under the same name
    assert _weights(target) == ["reset v1"] and len(merges) == 3
    resolved = models.resolve_dtype(cfg.policy.dtype, cfg.policy.device)  # 'auto' merges in what this CPU computes
    other_dtype = C.with_overrides(cfg, {"policy.dtype": "bfloat16" if resolved == "float32" else "float32"})
    policy.merged_checkpoint(other_dtype, target, [reset])  # another base precision
    assert len(merges) == 4


def test_a_merge_cut_short_is_redone(tmp_path: Path, merges: list[list[str]]) -> None:
    cfg = C.load(CONFIGS / "smoke.yaml", ["policy.load_in_4bit=true"])
    align = _adapter(tmp_path / "iter0" / "06_align" / "adapter", b"align v1")
    target = tmp_path / "merged" / "iter1"
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # a kill after save_pretrained began, before the key was written
    (target / "model.safetensors").write_text("half a file")
    policy.merged_checkpoint(cfg, target, [align])
    assert merges == [["align v1"]] and _weights(target) == ["align v1"]
    assert (target / policy.MERGE_KEY).is_file()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]
