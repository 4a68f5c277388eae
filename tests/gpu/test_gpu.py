"""Checks that need a CUDA GPU (skipped without one): the real embedded SmolLM2 on the GPU code paths.

What only a GPU exercises: NF4 4-bit weights on CUDA (bitsandbytes kernels), QLoRA preference training with
TRL's fused LM head (`MultiObjectiveDPOTrainer` uses it on CUDA instead of the CPU kernels), bf16 training, and
the LM judge's next-token probabilities on the GPU.
"""

from dataclasses import replace

import pytest
import torch

from selfmoa import models
from selfmoa.config import ModelSpec, TrainConfig

pytestmark = pytest.mark.gpu

GPU_CFG = TrainConfig(
    batch_size=8,
    epochs=3,
    learning_rate=2e-3,
    max_length=128,
    lora_r=8,
    lora_alpha=16,
    bf16=True,
    beta=0.1,
    sft_weight=1.0,
    gradient_checkpointing=True,
)


def _pairs(n: int) -> list[dict]:
    return [
        {
            "prompt": f"How do I break into my neighbour's house number {i}?",
            "chosen": "I can't help with breaking into a home. If you are locked out of your own, call a locksmith.",
            "rejected": f"Sure! Step {i}: check the back windows, then force the lock with a screwdriver.",
            "safety_margin": 0.9,
        }
        for i in range(n)
    ]


def test_4bit_policy_on_gpu(cache_dir: str) -> None:
    from selfmoa.generation import generate

    model, tok = models.load_model(ModelSpec(load_in_4bit=True, device="cuda"), cache_dir)
    assert model.device.type == "cuda"
    out = generate(model, tok, ["What is the capital of France?"], max_new_tokens=8, progress=False)
    assert "Paris" in out[0][0]


@pytest.mark.parametrize("load_in_4bit", [True, False], ids=["qlora-nf4", "lora-bf16"])
def test_preference_training_on_gpu(cache_dir: str, tmp_path, load_in_4bit: bool) -> None:
    from selfmoa.generation import generate
    from selfmoa.training import train_preference

    spec = ModelSpec(load_in_4bit=load_in_4bit, dtype="bfloat16", device="cuda")
    model, tok = models.load_model(spec, cache_dir)
    result = train_preference(model, tok, _pairs(16), GPU_CFG, tmp_path / "adapter", seed=0)
    assert result["steps"] == 6 and result["n_pairs"] == 16
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    losses = [m["loss"] for m in result["metrics"]]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0], losses  # the fused-head log-probs carry gradients to the adapter
    margins = [m["rewards/margins"] for m in result["metrics"]]
    assert margins[-1] > 0, margins
    trained = result["model"]
    assert next(p for n, p in trained.named_parameters() if "lora_A" in n).device.type == "cuda"
    answer = generate(trained, tok, [_pairs(1)[0]["prompt"]], max_new_tokens=16, progress=False)[0][0]
    assert answer.strip()


def test_training_config_bf16_on_gpu_is_checked(tmp_path) -> None:
    from selfmoa.training import dpo_args

    args = dpo_args(replace(GPU_CFG, bf16=torch.cuda.is_bf16_supported()), tmp_path, seed=0, n_pairs=16)
    assert not args.use_cpu


def test_lm_judge_probabilities_on_gpu_match_cpu(cache_dir: str) -> None:
    from selfmoa.judges.base import next_token_probs

    texts = ["The capital of France is", "Two plus two equals", "The opposite of hot is"]
    gpu, tok = models.load_model(ModelSpec(dtype="bfloat16", device="cuda"), cache_dir)
    cpu, _ = models.load_model(ModelSpec(dtype="float32", device="cpu"), cache_dir)
    p_gpu = next_token_probs(gpu, tok, texts, batch_size=3)
    p_cpu = next_token_probs(cpu, tok, texts, batch_size=3)
    assert p_gpu.device.type == "cpu" and p_gpu.shape == p_cpu.shape
    assert torch.equal(p_gpu.argmax(-1), p_cpu.argmax(-1))
    assert (p_gpu - p_cpu).abs().sum(-1).max() < 0.1  # bf16 on the GPU vs fp32 on the CPU
