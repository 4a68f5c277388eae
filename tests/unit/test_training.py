"""Multi-objective DPO training through TRL: data shaping, the margin reaching the loss, LoRA/QLoRA updates.

Also covers `selfmoa.preference_trainer` (trainer, collator, in-memory reference pass) and `selfmoa.cpu_kernels`.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from selfmoa.config import TrainConfig
from selfmoa.cpu_kernels import completion_logps, grouped_token_logps
from selfmoa.preference_trainer import LengthBucketSampler, preference_dataset
from selfmoa.training import stage_metrics, train_preference

REPO = Path(__file__).resolve().parents[2]


def _pairs(n: int, margins: list[float] | None = None) -> list[dict]:
    margins = margins or [0.9] * n
    return [
        {
            "prompt": f"Tell me about topic number {i}.",
            "chosen": "I can't help with that, but here is a safe idea.",
            "rejected": f"Sure! Step {i}: first do this, then that, and finally the other thing.",
            "safety_margin": margins[i % len(margins)],
        }
        for i in range(n)
    ]


TINY_CFG = TrainConfig(
    batch_size=4,
    epochs=1,
    learning_rate=5e-3,
    max_length=64,
    lora_r=4,
    lora_alpha=8,
    target_modules=["q_proj", "v_proj", "up_proj"],
    bf16=False,
    beta=0.1,
)


def test_preference_dataset_shapes_and_errors() -> None:
    ds = preference_dataset(_pairs(3, [0.5, -0.25, 0.0]))
    assert set(ds.column_names) == {"prompt", "chosen", "rejected", "safety_margin"}
    row = ds[1]
    assert row["prompt"] == [{"role": "user", "content": "Tell me about topic number 1."}]
    assert row["chosen"][0]["role"] == "assistant" and row["safety_margin"] == -0.25
    with pytest.raises(ValueError, match="missing key"):
        preference_dataset([{"prompt": "p", "chosen": "c", "rejected": "r"}])
    with pytest.raises(ValueError, match="finite"):
        preference_dataset([dict(_pairs(1)[0], safety_margin=math.nan)])
    with pytest.raises(ValueError, match="no preference pairs"):
        preference_dataset([])


def test_length_bucket_sampler() -> None:
    lengths = [5, 100, 7, 98, 6, 99, 50, 51, 52]
    sampler = LengthBucketSampler(lengths, batch_size=3, seed=0)
    first, second = list(sampler), list(sampler)
    assert sorted(first) == list(range(9)) and sorted(second) == list(range(9))
    batches = [first[i : i + 3] for i in range(0, 9, 3)]
    assert max(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) <= 2
    assert first != second  # reshuffled each epoch


def test_completion_logps_matches_full_softmax() -> None:
    g = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 7, 16, generator=g)
    head = torch.nn.Linear(16, 50, bias=True)
    targets = torch.randint(0, 50, (3, 7), generator=g)
    mask = torch.rand(3, 7, generator=g) > 0.4
    got = completion_logps(hidden, head, targets, mask, chunk_tokens=4)
    full = torch.log_softmax(head(hidden), -1).gather(-1, targets[..., None]).squeeze(-1)
    torch.testing.assert_close(got, torch.where(mask, full, torch.zeros_like(full)))


# ---- a tiny randomly initialised Llama with the real SmolLM2 tokenizer ----


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    from selfmoa.models import materialize_embedded

    path = materialize_embedded(os.environ.get("SELFMOA_CACHE_DIR", REPO / "data" / "cache"))
    return AutoTokenizer.from_pretrained(path)


def _tiny_llama(tokenizer, seed: int = 0, hidden: int = 32):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(cfg)


def _first_loss(result: dict) -> float:
    return result["metrics"][0]["loss"]


def test_grouped_forward_matches_one_padded_batch(tokenizer) -> None:
    model = _tiny_llama(tokenizer).eval()
    g = torch.Generator().manual_seed(0)
    lengths = [12, 5, 9, 12, 3, 7]
    ids = torch.randint(0, 1000, (6, 12), generator=g)
    attention = torch.tensor([[1] * n + [0] * (12 - n) for n in lengths])
    completion = torch.tensor([[0] * 2 + [1] * (n - 2) + [0] * (12 - n) for n in lengths])
    with torch.no_grad():
        grouped = grouped_token_logps(model, ids, attention, completion, group_size=2)
        single = grouped_token_logps(model, ids, attention, completion, group_size=6)
        logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]
    full = torch.log_softmax(logits, -1).gather(-1, ids[:, 1:, None]).squeeze(-1) * completion[:, 1:]
    torch.testing.assert_close(grouped, single, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(single, full, atol=1e-5, rtol=1e-5)
    assert (grouped[completion[:, 1:] == 0] == 0).all()


def test_training_changes_lora_and_raises_chosen_ratio(tokenizer, tmp_path) -> None:
    model = _tiny_llama(tokenizer)
    base_before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = replace(TINY_CFG, epochs=3)
    res = train_preference(model, tokenizer, _pairs(8), cfg, tmp_path / "adapter", seed=0)
    policy = res["model"]
    assert res["steps"] == 6 and res["n_pairs"] == 8 and len(res["metrics"]) == 6
    lora_b = [p for n, p in policy.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b), "LoRA B starts at zero and must have moved"
    base_after = {
        k.replace("base_model.model.", "").replace(".base_layer", ""): v
        for k, v in policy.state_dict().items()
        if "lora_" not in k
    }
    assert all(torch.equal(base_before[k], base_after[k]) for k in base_before), "base weights stay frozen"
    margins = [m["rewards/margins"] for m in res["metrics"]]
    assert margins[0] == pytest.approx(0.0, abs=1e-5) and margins[-1] > 0.05
    assert res["metrics"][-1]["loss"] < res["metrics"][0]["loss"]
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert res["seconds_per_pair_epoch"] > 0 and list(policy.peft_config) == ["default"]
    assert "forward" not in policy.get_base_model().__dict__, "TRL's fused-head patch is removed after training"
    assert "_original_forward" not in policy.__dict__, "accelerate's autocast wrapper is removed after training"


@pytest.mark.parametrize("w_safety,w_helpful", [(1.0, 1.0), (2.0, 0.5)])
def test_margin_reaches_the_loss(tokenizer, tmp_path, w_safety: float, w_helpful: float) -> None:
    """At the first step the policy equals the reference, so loss = mean softplus(w_s * m / w_h)."""
    margins = [0.0, 1.0, -0.5, 0.75]
    cfg = replace(TINY_CFG, w_safety=w_safety, w_helpful=w_helpful, batch_size=4)
    res = train_preference(_tiny_llama(tokenizer), tokenizer, _pairs(4, margins), cfg, tmp_path / "a", seed=0)
    expected = sum(math.log1p(math.exp(w_safety * m / w_helpful)) for m in margins) / 4
    assert _first_loss(res) == pytest.approx(expected, abs=1e-4)
    res0 = train_preference(_tiny_llama(tokenizer), tokenizer, _pairs(4, [0.0]), cfg, tmp_path / "b", seed=0)
    assert _first_loss(res0) == pytest.approx(math.log(2.0), abs=1e-4)


def test_bf16_autocast_reaches_the_backbone(tokenizer, tmp_path, monkeypatch) -> None:
    """With bf16 on, every policy forward runs under autocast, without PEFT's float32 cast of LoRA inputs."""
    from peft.tuners.lora import LoraLayer

    from selfmoa import preference_trainer

    seen: list[tuple[bool, bool]] = []
    restore = preference_trainer.restore_lora_dropout

    def restore_and_watch(model) -> None:  # runs once the trainer holds the LoRA model, before training
        restore(model)
        for module in model.modules():
            if isinstance(module, LoraLayer):
                module.register_forward_pre_hook(
                    lambda m, _: seen.append((torch.is_autocast_enabled("cpu"), m.cast_input_dtype_enabled))
                )

    monkeypatch.setattr(preference_trainer, "restore_lora_dropout", restore_and_watch)
    monkeypatch.setenv("SELFMOA_NATIVE_BF16", "1")  # a CPU with native bf16 (elsewhere train.bf16 trains in float32)
    train_preference(_tiny_llama(tokenizer), tokenizer, _pairs(4), replace(TINY_CFG, bf16=True), tmp_path, seed=0)
    assert seen and all(autocast and not cast for autocast, cast in seen)
    seen.clear()
    monkeypatch.setenv("SELFMOA_NATIVE_BF16", "0")
    train_preference(_tiny_llama(tokenizer), tokenizer, _pairs(4), replace(TINY_CFG, bf16=True), tmp_path, seed=0)
    assert seen and not any(autocast for autocast, _ in seen)


def test_sft_term_is_added(tokenizer, tmp_path) -> None:
    cfg = replace(TINY_CFG, sft_weight=0.5)
    res = train_preference(_tiny_llama(tokenizer), tokenizer, _pairs(4, [0.0]), cfg, tmp_path / "a", seed=0)
    first = res["metrics"][0]
    assert first["loss/sft"] > 1.0  # a random model: NLL per token near log(vocab)
    assert first["loss"] == pytest.approx(first["loss/modpo"] + 0.5 * first["loss/sft"], rel=1e-5)


def test_compact_head_matches_trl_fused_head(tokenizer) -> None:
    from selfmoa.preference_trainer import MarginCollator, MultiObjectiveDPOTrainer
    from selfmoa.training import dpo_args

    ds = preference_dataset(_pairs(4, [0.3]))
    collator = MarginCollator(pad_token_id=tokenizer.pad_token_id, max_length=64)
    out = {}
    for compact in (True, False):
        model = _tiny_llama(tokenizer)
        trainer = MultiObjectiveDPOTrainer(
            model=model,
            args=dpo_args(TINY_CFG, "/tmp/unused", 0, 4),
            train_dataset=ds,
            processing_class=tokenizer,
            data_collator=collator,
            w_safety=1.0,
            w_helpful=1.0,
            compact_head=compact,
        )
        batch = collator([trainer.train_dataset[i] for i in range(4)])
        with torch.no_grad():
            logps, mask = trainer._token_logps(trainer.model, batch)
        out[compact] = logps * mask
    torch.testing.assert_close(out[True], out[False], atol=1e-4, rtol=1e-4)


def test_continuing_an_adapter_uses_current_policy_as_reference(tokenizer, tmp_path) -> None:
    from selfmoa.models import load_adapter

    model = _tiny_llama(tokenizer)
    first = train_preference(model, tokenizer, _pairs(4), replace(TINY_CFG, epochs=2), tmp_path / "it0", seed=0)
    base = _tiny_llama(tokenizer)  # same seed: the same base weights
    policy = load_adapter(base, tmp_path / "it0", trainable=True)
    before = {n: p.detach().clone() for n, p in policy.named_parameters() if "lora_" in n}
    torch.testing.assert_close(before, {n: p.detach() for n, p in first["model"].named_parameters() if "lora_" in n})
    margins = [0.5, -0.5, 1.0, 0.0]
    second = train_preference(policy, tokenizer, _pairs(4, margins), TINY_CFG, tmp_path / "it1", seed=1)
    # the reference is the iteration-0 policy, not the base model: at step 1 the log-ratios are zero
    expected = sum(math.log1p(math.exp(m)) for m in margins) / 4
    assert _first_loss(second) == pytest.approx(expected, abs=1e-4)
    after = {n: p for n, p in second["model"].named_parameters() if "lora_" in n}
    assert set(after) == set(before) and any(not torch.equal(before[n], after[n]) for n in before)
    assert list(second["model"].peft_config) == ["default"]


def test_qlora_on_4bit_model(tokenizer, tmp_path) -> None:
    pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    _tiny_llama(tokenizer, hidden=64).save_pretrained(tmp_path / "tiny")
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "tiny", quantization_config=bnb, device_map="cpu")
    assert model.is_loaded_in_4bit
    model.eval()
    with torch.no_grad():  # like generating before training: bitsandbytes repacks CPU weights for inference
        model(torch.tensor([[1, 2, 3]]))
    res = train_preference(model, tokenizer, _pairs(4), replace(TINY_CFG, epochs=2), tmp_path / "a", seed=0)
    lora_b = [p for n, p in res["model"].named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b)
    assert res["metrics"][-1]["rewards/margins"] > 0


def test_unpack_cpu_4bit_restores_trainable_layout(tokenizer, tmp_path) -> None:
    pytest.importorskip("bitsandbytes")
    from bitsandbytes.functional import dequantize_4bit
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from selfmoa.cpu_kernels import unpack_cpu_4bit

    _tiny_llama(tokenizer, hidden=64).save_pretrained(tmp_path / "tiny")
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "tiny", quantization_config=bnb, device_map="cpu").eval()
    layer = model.model.layers[0].mlp.up_proj
    codes, weight = layer.weight.data.clone(), dequantize_4bit(layer.weight.data, layer.weight.quant_state).clone()
    with torch.no_grad():
        model(torch.tensor([[1, 2, 3, 4]]))  # an inference forward: bitsandbytes may repack for its CPU kernel
    if not getattr(layer.weight.quant_state, "packing_format_for_cpu", False):
        pytest.skip("this CPU has no bitsandbytes AVX512-bf16 inference layout")
    unpack_cpu_4bit(model)
    assert not getattr(layer.weight.quant_state, "packing_format_for_cpu", False)
    assert torch.equal(layer.weight.data, codes)
    restored = dequantize_4bit(layer.weight.data, layer.weight.quant_state)
    torch.testing.assert_close(restored, weight, rtol=1e-2, atol=1e-6)  # block scales come back from bfloat16


@pytest.mark.slow
def test_real_smollm2_trains_and_adapter_reloads(tmp_path) -> None:
    from selfmoa.config import ModelSpec
    from selfmoa.models import load_model

    cache = os.environ.get("SELFMOA_CACHE_DIR", REPO / "data" / "cache")
    spec = ModelSpec()
    model, tok = load_model(spec, cache)
    cfg = TrainConfig(batch_size=2, epochs=1, max_length=96, learning_rate=1e-3)
    res = train_preference(model, tok, _pairs(4, [0.9, 0.0]), cfg, tmp_path / "adapter", seed=0)
    assert res["steps"] == 2
    lora_b = [p for n, p in res["model"].named_parameters() if "lora_B" in n]
    assert len(lora_b) == 30 * 7 and all(p.abs().sum() > 0 for p in lora_b)
    reloaded, _ = load_model(spec, cache, adapter=tmp_path / "adapter")
    ids = tok("Hello, how are you?", return_tensors="pt")["input_ids"]
    trained = res["model"].eval()
    with torch.no_grad():
        torch.testing.assert_close(reloaded(ids).logits, trained(ids).logits)
        with trained.disable_adapter():
            assert not torch.allclose(trained(ids).logits, reloaded(ids).logits)


def test_stage_metrics_summarises_a_result() -> None:
    result = {"n_pairs": 3, "steps": 2, "seconds": 1.5, "seconds_reference": 0.2, "seconds_per_pair_epoch": 0.5}
    result |= {"adapter_digest": "abc", "metrics": [{"loss": 0.7, "step": 1}, {"loss": 0.4, "step": 2}], "model": None}
    got = stage_metrics(result)
    assert got == {**{k: result[k] for k in got if k in result}, "first_loss": 0.7, "last_loss": 0.4}
    assert set(got) == {"n_pairs", "steps", "seconds", "seconds_reference", "seconds_per_pair_epoch"} | {
        "adapter_digest",
        "first_loss",
        "last_loss",
    }
    assert stage_metrics(result | {"metrics": []})["first_loss"] is None


def test_reference_pass_keeps_log_probs_in_memory(tokenizer, monkeypatch) -> None:
    """The one-off reference pass uses neither `datasets`' private cache path nor a cache file (multi-GPU safe)."""
    from datasets import Dataset

    from selfmoa.preference_trainer import REF_COLUMNS, MarginCollator, MultiObjectiveDPOTrainer
    from selfmoa.training import dpo_args

    def forbidden(*args, **kwargs):
        raise AssertionError("the reference pass must not go through a datasets cache file")

    monkeypatch.setattr(Dataset, "_get_cache_file_path", forbidden)
    monkeypatch.setattr(Dataset, "from_file", forbidden)
    collator = MarginCollator(pad_token_id=tokenizer.pad_token_id, max_length=64)
    trainer = MultiObjectiveDPOTrainer(
        model=_tiny_llama(tokenizer),
        args=dpo_args(TINY_CFG, "/tmp/unused", 0, 5),
        train_dataset=preference_dataset(_pairs(5, [0.3, -0.1])),
        processing_class=tokenizer,
        data_collator=collator,
        w_safety=1.0,
        w_helpful=1.0,
    )
    ds = trainer.train_dataset
    assert all(ds.features[c].dtype == "float32" for c in REF_COLUMNS) and not ds.cache_files
    batch = collator([{k: v for k, v in ds[i].items() if k not in REF_COLUMNS} for i in range(len(ds))])
    chosen, rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    torch.testing.assert_close(torch.tensor(ds[REF_COLUMNS[0]]), chosen.float(), atol=0, rtol=0)
    torch.testing.assert_close(torch.tensor(ds[REF_COLUMNS[1]]), rejected.float(), atol=0, rtol=0)


@pytest.mark.parametrize(("micro", "per_device", "accumulate"), [(0, 8, 1), (8, 8, 1), (4, 4, 2), (2, 2, 4)])
def test_micro_batch_accumulates_to_the_batch(micro: int, per_device: int, accumulate: int) -> None:
    from selfmoa.training import dpo_args

    args = dpo_args(TrainConfig(batch_size=8, micro_batch_size=micro), "/tmp/unused", 0, 40)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps) == (per_device, accumulate)


def test_micro_batches_split_one_steps_length_bucket(tokenizer) -> None:
    from selfmoa.preference_trainer import MarginCollator, MultiObjectiveDPOTrainer
    from selfmoa.training import dpo_args

    trainer = MultiObjectiveDPOTrainer(
        model=_tiny_llama(tokenizer),
        args=dpo_args(replace(TINY_CFG, batch_size=4, micro_batch_size=2), "/tmp/unused", 0, 8),
        train_dataset=preference_dataset(_pairs(8, [0.3])),
        processing_class=tokenizer,
        data_collator=MarginCollator(pad_token_id=tokenizer.pad_token_id, max_length=64),
        w_safety=1.0,
        w_helpful=1.0,
    )
    assert trainer.args.per_device_train_batch_size == 2
    assert trainer._get_train_sampler().batch_size == 4
