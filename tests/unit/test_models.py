from pathlib import Path

import pytest

from selfmoa import models
from selfmoa.config import ModelSpec


@pytest.mark.slow
def test_embedded_model_materializes_once(cache_dir: str) -> None:
    path = models.materialize_embedded(cache_dir)
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()
    assert models.materialize_embedded(cache_dir) == path


def test_unknown_embedded_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(models.ModelLoadError, match="unknown embedded model"):
        models.materialize_embedded(tmp_path, "embedded:Nope")


def test_hub_model_offline_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # read once at import: a process that imported huggingface_hub before the variable was set stays online
    # (and waits for connection timeouts here) unless the constant is patched too
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(models.ModelLoadError, match="huggingface.co"):
        models.load_model(ModelSpec(name="Qwen/Qwen2.5-1.5B-Instruct-not-cached"), tmp_path)


def test_cuda_without_gpu_is_a_clear_error(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(models.ModelLoadError, match="no CUDA GPU"):
        models.load_model(ModelSpec(device="cuda"), tmp_path)


def test_auto_dtype_follows_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.setenv("SELFMOA_NATIVE_BF16", "1")
    assert models.resolve_dtype("auto") == "bfloat16" and models.autocast_bf16(True)
    assert models._torch_dtype("auto") == torch.bfloat16
    monkeypatch.setenv("SELFMOA_NATIVE_BF16", "0")
    assert models.resolve_dtype("auto") == "float32" and models._torch_dtype("auto") == torch.float32
    assert models.autocast_bf16(True) is torch.cuda.is_available()  # a GPU keeps train.bf16 as asked
    for name in ("float32", "bfloat16", "float16"):  # an explicit dtype is never changed
        assert models.resolve_dtype(name) == name
    assert not models.autocast_bf16(False)
    monkeypatch.delenv("SELFMOA_NATIVE_BF16")
    flags = open("/proc/cpuinfo").read() if Path("/proc/cpuinfo").is_file() else ""
    if not torch.cuda.is_available() and flags:
        assert models.native_bf16("cpu") == ("avx512_bf16" in flags or "amx_tile" in flags)


@pytest.mark.slow
def test_4bit_load_and_qlora_backward(cache_dir: str) -> None:
    import torch

    model, tok = models.load_model(ModelSpec(dtype="float32", load_in_4bit=True), cache_dir, trainable=True)
    assert getattr(model, "is_loaded_in_4bit", False)
    footprint = model.get_memory_footprint() / 2**20
    assert footprint < 250, footprint  # fp32 weights take 513 MiB
    model = models.attach_lora(model, r=4, alpha=8, target_modules=["q_proj", "v_proj"])
    batch = tok(["Hello there, how are you?"], return_tensors="pt")
    out = model(**batch, labels=batch["input_ids"])
    out.loss.backward()
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n and p.requires_grad]
    assert grads and all(g is not None for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)
    assert torch.isfinite(out.loss)


@pytest.mark.slow
def test_lora_save_load_merge_roundtrip(cache_dir: str, tmp_path: Path) -> None:
    import torch

    spec = ModelSpec(dtype="float32")
    base, tok = models.load_model(spec, cache_dir)
    peft_model = models.attach_lora(base, r=4, alpha=8)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.fill_(0.01)
    batch = tok(["A short test sentence."], return_tensors="pt")
    with torch.no_grad():
        want = peft_model(**batch).logits
    models.save_adapter(peft_model, tmp_path / "adapter")
    fresh, _ = models.load_model(spec, cache_dir, adapter=tmp_path / "adapter")
    with torch.no_grad():
        got = fresh(**batch).logits
        merged = models.merge_adapter(fresh)(**batch).logits
    assert torch.allclose(want, got, atol=1e-4)
    assert torch.allclose(want, merged, atol=1e-3)
    with pytest.raises(models.ModelLoadError, match="not a LoRA adapter"):
        models.load_model(spec, cache_dir, adapter=tmp_path)
