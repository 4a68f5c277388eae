from pathlib import Path

import pytest

from selfmoa.generation import GenerationCache, SamplingSettings, cache_key, generate, length_sorted_batches


def test_length_sorted_batches_cover_every_index_once() -> None:
    lengths = [5, 1, 9, 3, 7, 2, 8]
    batches = length_sorted_batches(lengths, 3)
    assert sorted(i for b in batches for i in b) == list(range(7))
    assert [lengths[i] for i in batches[0]] == [9, 8, 7]
    assert all(len(b) <= 3 for b in batches)


def test_cache_key_covers_what_changes_outputs() -> None:
    s = SamplingSettings(max_new_tokens=8, temperature=0.8, seed=1)
    base = cache_key("m", None, "p", s, 0)
    assert base != cache_key("m2", None, "p", s, 0)
    assert base != cache_key("m", "sys", "p", s, 0)
    assert base != cache_key("m", None, "p", SamplingSettings(max_new_tokens=8, temperature=0.8, seed=2), 0)
    assert base != cache_key("m", None, "p", s, 1)
    greedy = SamplingSettings(max_new_tokens=8, temperature=0.0, seed=1)
    assert cache_key("m", None, "p", greedy, 0) == cache_key(
        "m", None, "p", SamplingSettings(max_new_tokens=8, temperature=0.0, seed=5), 3
    )


def test_cache_store(tmp_path: Path) -> None:
    c = GenerationCache(tmp_path / "g.sqlite")
    c.put_many({"a": "x", "b": "y"})
    assert c.get_many(["a", "b", "z"]) == {"a": "x", "b": "y"}


@pytest.mark.slow
def test_real_batched_generation_matches_single_and_caches(smollm, tmp_path: Path) -> None:
    model, tok = smollm
    prompts = ["What is the capital of France?", "Name three primary colours and explain why they are primary."]
    batched = generate(model, tok, prompts, max_new_tokens=12, batch_size=2, progress=False)
    single = [generate(model, tok, [p], max_new_tokens=12, progress=False)[0] for p in prompts]
    assert batched == single
    assert "Paris" in batched[0][0]
    cache = GenerationCache(tmp_path / "g.sqlite")
    a = generate(
        model,
        tok,
        prompts,
        max_new_tokens=8,
        temperature=0.9,
        num_return_sequences=2,
        seed=3,
        cache=cache,
        progress=False,
    )
    assert all(len(r) == 2 for r in a)
    b = generate(
        model,
        tok,
        prompts,
        max_new_tokens=8,
        temperature=0.9,
        num_return_sequences=2,
        seed=3,
        cache=cache,
        progress=False,
    )
    assert a == b


def test_sampled_outputs_do_not_depend_on_what_the_cache_holds(smollm, tmp_path: Path) -> None:
    """A cache warmed by a call over part of the prompts must not change what a later call over all of them gets."""
    model, tok = smollm
    prompts = ["Tell me a fact about owls.", "Give me a word that rhymes with cat.", "Name a colour."]
    kw = dict(max_new_tokens=6, temperature=1.0, num_return_sequences=2, seed=5, batch_size=2, progress=False)
    cold = generate(model, tok, prompts, **kw)
    warm_cache = GenerationCache(tmp_path / "warm.sqlite")
    generate(model, tok, prompts[1:], cache=warm_cache, **kw)
    assert generate(model, tok, prompts, cache=warm_cache, **kw) == cold
    assert generate(model, tok, prompts, cache=warm_cache, **kw) == cold
