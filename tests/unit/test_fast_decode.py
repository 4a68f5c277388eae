"""The fast decode loop against the reference path (`model.generate`): same tokens, same draws, fallbacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from selfmoa import fast_decode  # noqa: E402
from selfmoa.generation import generate  # noqa: E402

PROMPTS = [
    "What is the capital of France?",
    "Name three primary colours.",
    "How do I bake bread at home? Give the steps.",
    "Explain photosynthesis to a child in two sentences.",
    "Write a haiku about the sea.",
    "How can I pick a lock without the key?",
    "What is 17 times 23?",
    "Give me tips for a job interview.",
]


def _random_llama(tok: Any, hidden: int) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return LlamaForCausalLM(cfg).eval()


@pytest.fixture(scope="module")
def tiny(cache_dir: str) -> tuple[Any, Any]:
    """A 2-layer random Llama (fp32) with the real SmolLM2 tokenizer and chat template."""
    from selfmoa.config import ModelSpec
    from selfmoa.models import load_tokenizer

    tok = load_tokenizer(ModelSpec(), cache_dir)
    return _random_llama(tok, 32), tok


def _both(model: Any, tok: Any, prompts: list[str], **kw: Any) -> tuple[list[list[str]], list[list[str]]]:
    fast = generate(model, tok, prompts, decoder="fast", progress=False, **kw)
    ref = generate(model, tok, prompts, decoder="reference", progress=False, **kw)
    return fast, ref


def test_greedy_matches_reference_tiny(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    fast, ref = _both(model, tok, PROMPTS, max_new_tokens=12, batch_size=3)
    assert fast == ref
    assert any(r[0] for r in ref)


def test_sampling_matches_reference_and_is_seeded(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    kw = {"max_new_tokens": 10, "temperature": 0.9, "top_p": 0.8, "num_return_sequences": 3, "batch_size": 4}
    fast, ref = _both(model, tok, PROMPTS[:5], seed=7, **kw)
    assert fast == ref  # same operations and random draws as generate()
    again = generate(model, tok, PROMPTS[:5], decoder="fast", seed=7, progress=False, **kw)
    other = generate(model, tok, PROMPTS[:5], decoder="fast", seed=8, progress=False, **kw)
    assert again == fast
    assert other != fast
    assert len({s for r in fast for s in r}) > len(PROMPTS[:5])  # samples differ within a prompt


def test_next_tokens_matches_transformers_warpers() -> None:
    from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(1)) * 3
    assert torch.equal(fast_decode.next_tokens(logits, 0.0, 1.0), logits.argmax(-1))
    for temperature, top_p in [(0.7, 0.9), (1.0, 0.5), (1.3, 1.0)]:
        scores = TemperatureLogitsWarper(temperature)(None, logits) if temperature != 1.0 else logits
        if top_p < 1.0:
            scores = TopPLogitsWarper(top_p)(None, scores)
        torch.manual_seed(3)
        want = torch.multinomial(torch.softmax(scores, -1), 1).squeeze(1)
        torch.manual_seed(3)
        assert torch.equal(fast_decode.next_tokens(logits, temperature, top_p), want)


def test_eos_stops_early_and_pads_finished_rows(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    enc = tok(["Hello there", "A much longer prompt with more words in it"], return_tensors="pt", padding=True)
    kw = {"max_new_tokens": 8, "pad_id": 7}  # any valid id: finished rows feed it back, as generate() does
    free = fast_decode.decode(model, enc["input_ids"], enc["attention_mask"], eos_ids=[-5], **kw)
    assert free.shape == (2, 8)
    # make row 0's third token and row 1's fifth token end-of-sequence: decoding stops after step 5
    eos = [int(free[0, 2]), int(free[1, 4])]
    out = fast_decode.decode(model, enc["input_ids"], enc["attention_mask"], eos_ids=eos, **kw)
    first_end = [min(j for j in range(8) if int(free[i, j]) in eos) for i in range(2)]
    assert out.shape[1] == max(first_end) + 1 < 8
    for i, end in enumerate(first_end):
        assert torch.equal(out[i, : end + 1], free[i, : end + 1])
        assert bool((out[i, end + 1 :] == 7).all())


def test_compact_drops_ended_rows_and_keeps_their_tokens(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    enc = tok(PROMPTS[:4], return_tensors="pt", padding=True)
    kw = {"max_new_tokens": 10, "pad_id": 7}
    free = fast_decode.decode(model, enc["input_ids"], enc["attention_mask"], eos_ids=[-5], **kw)
    # rows 0 and 2 end early (at steps 1 and 3): the batch shrinks twice, rows 1 and 3 decode on alone
    eos = [int(free[0, 1]), int(free[2, 3])]
    plain = fast_decode.decode(model, enc["input_ids"], enc["attention_mask"], eos_ids=eos, **kw)
    compact = fast_decode.decode(model, enc["input_ids"], enc["attention_mask"], eos_ids=eos, compact=True, **kw)
    assert torch.equal(compact, plain)  # fp32: dropping rows changes no other row's tokens
    assert bool((compact[0, 2:] == 7).all()) and bool((compact[2, 4:] == 7).all())


def test_compact_decoder_greedy_matches_reference_tiny(tiny: tuple[Any, Any]) -> None:
    model, tok = tiny
    compact = generate(model, tok, PROMPTS, decoder="compact", progress=False, max_new_tokens=12, batch_size=8)
    ref = generate(model, tok, PROMPTS, decoder="reference", progress=False, max_new_tokens=12, batch_size=8)
    assert compact == ref


def test_unsupported_models_fall_back(tiny: tuple[Any, Any]) -> None:
    from peft import LoraConfig, get_peft_model

    model, tok = tiny
    assert fast_decode.unsupported_reason(model) is None
    assert "repetition_penalty" in fast_decode.unsupported_reason(model, repetition_penalty=1.2)
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"]))
    try:
        assert "PEFT" in fast_decode.unsupported_reason(wrapped)
        fast, ref = _both(wrapped, tok, PROMPTS[:3], max_new_tokens=6)
        assert fast == ref
        fast, ref = _both(model, tok, PROMPTS[:3], max_new_tokens=6, repetition_penalty=1.3)
        assert fast == ref
    finally:
        wrapped.unload()
    with pytest.raises(ValueError, match="sampling.decoder"):
        generate(model, tok, PROMPTS[:1], decoder="turbo", progress=False)


def test_4bit_model_falls_back(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    pytest.importorskip("bitsandbytes")
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    _, tok = tiny
    _random_llama(tok, 128).save_pretrained(tmp_path)  # bitsandbytes' blocks need wider layers
    q = AutoModelForCausalLM.from_pretrained(
        tmp_path,
        quantization_config=BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4"),
        device_map="cpu",
    )
    assert "quantised" in fast_decode.unsupported_reason(q)
    fast, ref = _both(q, tok, PROMPTS[:2], max_new_tokens=5)
    assert fast == ref


@pytest.mark.slow
def test_real_policy_fp32_greedy_identical(smollm: tuple[Any, Any]) -> None:
    """The embedded SmolLM2-135M in fp32: both paths give the same greedy answers on 8 real prompts."""
    model, tok = smollm
    fast, ref = _both(model, tok, PROMPTS, max_new_tokens=32, batch_size=4)
    assert fast == ref
    assert "Paris" in fast[0][0]


def test_cache_keys_name_the_decoder(tiny: tuple[Any, Any], tmp_path: Path) -> None:
    from selfmoa.generation import GenerationCache

    model, tok = tiny
    cache = GenerationCache(tmp_path / "g.sqlite")
    for decoder in ("fast", "reference", "fast"):
        generate(model, tok, PROMPTS[:2], max_new_tokens=4, cache=cache, decoder=decoder, progress=False)
    with cache._connect() as con:
        assert con.execute("SELECT COUNT(*) FROM gen").fetchone()[0] == 4


def test_output_head_gets_a_contiguous_input_for_frozen_models(tiny: tuple[Any, Any], smollm: tuple[Any, Any]) -> None:
    # a frozen model (merged adapters leave requires_grad off) with a strided head input makes torch.matmul copy
    # the head weight once per row; `contiguous_head_input` (applied by load_model) hands the head a contiguous copy
    from selfmoa.models import contiguous_head_input

    assert smollm[0].get_output_embeddings()._forward_pre_hooks  # load_model applied it
    model, tok = tiny
    decoders = fast_decode.DECODERS
    before = {d: generate(model, tok, PROMPTS[:3], decoder=d, progress=False, max_new_tokens=6) for d in decoders}
    seen: list[bool] = []
    handle = contiguous_head_input(model)
    post = model.get_output_embeddings().register_forward_hook(lambda m, a, out: seen.append(a[0].is_contiguous()))
    try:
        model.requires_grad_(False)
        after = {d: generate(model, tok, PROMPTS[:3], decoder=d, progress=False, max_new_tokens=6) for d in decoders}
    finally:
        handle.remove()
        post.remove()
        model.requires_grad_(True)
    assert len(seen) >= 2 and all(seen)
    assert after == before
