"""The optional vLLM backend up to the engine boundary (a fake engine stands in for vLLM)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from selfmoa import config as C
from selfmoa import policy, vllm_backend
from selfmoa.config import ModelSpec
from selfmoa.generation import GenerationCache, SamplingSettings, chat_texts
from selfmoa.paths import ROOT
from selfmoa.vllm_backend import VllmPolicy, VllmUnavailableError

POLICY = VllmPolicy(source="/ckpt/iter1", dtype="bfloat16", adapter_ids=["0:/a#1"])


@dataclass
class Completion:
    index: int
    text: str


@dataclass
class RequestOutput:
    outputs: list[Completion]


class FakeEngine:
    """`vllm.LLM.generate` stand-in: echoes each request and records what it was asked."""

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.calls: list[tuple[list[dict], list[dict]]] = []

    def generate(self, prompts: list[dict], sampling_params: list[dict], use_tqdm: bool = True) -> list:
        self.calls.append((prompts, sampling_params))
        outs = []
        for p, sp in zip(prompts, sampling_params, strict=True):
            tag = f"{len(p['prompt_token_ids'])}:{sp['seed']}"
            outs.append(RequestOutput([Completion(j, f" answer {j} to {tag} ") for j in reversed(range(sp["n"]))]))
        return outs


@pytest.fixture(scope="module")
def tok() -> Any:
    from selfmoa.models import load_tokenizer

    return load_tokenizer(ModelSpec(), ROOT / "data" / "cache")


def _generate(tok: Any, prompts: list[str], engine: FakeEngine, cache: GenerationCache | None, **kw: Any):
    return vllm_backend.generate_vllm(POLICY, tok, prompts, cache=cache, llm=engine, params_factory=dict, **kw)


def test_sampling_kwargs_greedy_and_sampled() -> None:
    greedy = vllm_backend.sampling_kwargs(SamplingSettings(max_new_tokens=32, temperature=0.0, top_p=0.9), 4, 7)
    assert greedy == {
        "n": 1,
        "temperature": 0.0,
        "top_p": 1.0,
        "max_tokens": 32,
        "repetition_penalty": 1.0,
        "seed": None,
    }
    sampled = vllm_backend.sampling_kwargs(SamplingSettings(96, 0.8, 0.95, 1.1, 0), 4, 7)
    assert sampled == {
        "n": 4,
        "temperature": 0.8,
        "top_p": 0.95,
        "max_tokens": 96,
        "repetition_penalty": 1.1,
        "seed": 7,
    }


def test_prompt_inputs_are_the_transformers_chat_texts(tok: Any) -> None:
    prompts = ["What is the capital of France?", "Write a haiku."]
    for system in (None, "Be brief."):
        inputs = vllm_backend.prompt_inputs(tok, prompts, system)
        texts = chat_texts(tok, prompts, system)
        # the token ids that `generation._generate_batch` feeds transformers (no extra BOS)
        assert [i["prompt_token_ids"] for i in inputs] == [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        assert [tok.decode(i["prompt_token_ids"]) for i in inputs] == texts


def test_unpack_orders_samples_and_checks_their_number() -> None:
    outs = [
        RequestOutput([Completion(1, " b "), Completion(0, "a\n")]),
        RequestOutput([Completion(0, "c"), Completion(1, "d")]),
    ]
    assert vllm_backend.unpack(outs, 2) == [["a", "b"], ["c", "d"]]
    with pytest.raises(RuntimeError, match="returned 2 samples for prompt 0; expected 3"):
        vllm_backend.unpack(outs, 3)


def test_request_seed_depends_on_prompt_and_seed_only() -> None:
    s = vllm_backend.request_seed
    assert s(0, None, "x") == s(0, None, "x") and 0 <= s(0, None, "x") < 2**31
    assert len({s(0, None, "x"), s(1, None, "x"), s(0, None, "y"), s(0, "sys", "x")}) == 4


def test_generate_shapes_order_and_greedy_repeat(tok: Any) -> None:
    engine = FakeEngine()
    prompts = ["short", "a somewhat longer prompt than the first", "mid length prompt"]
    lengths = [len(i["prompt_token_ids"]) for i in vllm_backend.prompt_inputs(tok, prompts)]
    greedy = _generate(tok, prompts, engine, None, num_return_sequences=3, max_new_tokens=8)
    assert greedy == [[f"answer 0 to {n}:None"] * 3 for n in lengths]  # one sample, repeated, in prompt order
    assert [(p["n"], p["seed"], p["max_tokens"]) for p in engine.calls[-1][1]] == [(1, None, 8)] * 3
    sampled = _generate(tok, prompts, engine, None, num_return_sequences=2, temperature=0.8, top_p=0.9, seed=3)
    seeds = [vllm_backend.request_seed(3, None, p) for p in prompts]
    assert sampled == [[f"answer {j} to {n}:{s}" for j in range(2)] for n, s in zip(lengths, seeds, strict=True)]
    assert [(p["n"], p["top_p"], p["temperature"]) for p in engine.calls[-1][1]] == [(2, 0.9, 0.8)] * 3
    with pytest.raises(ValueError):
        _generate(tok, prompts, engine, None, num_return_sequences=0)


def test_cache_is_reused_and_only_new_prompts_reach_the_engine(tok: Any, tmp_path: Path) -> None:
    cache = GenerationCache(tmp_path / "gen.sqlite")
    engine = FakeEngine()
    kw = {"num_return_sequences": 2, "temperature": 0.8, "seed": 1}
    first = _generate(tok, ["p1", "p2"], engine, cache, **kw)
    again = _generate(tok, ["p2", "p1"], engine, cache, **kw)
    assert len(engine.calls) == 1 and again == [first[1], first[0]]
    mixed = _generate(tok, ["p1", "p3"], engine, cache, **kw)
    assert len(engine.calls) == 2 and len(engine.calls[-1][0]) == 1 and mixed[0] == first[0]
    _generate(tok, ["p1"], engine, cache, **{**kw, "seed": 2})  # other settings: a new request
    assert len(engine.calls) == 3


def test_cache_keys_never_mix_backends_or_checkpoints() -> None:
    base = VllmPolicy(source="/ckpt/iter1")
    assert base.fingerprint().startswith("vllm|")
    others = [VllmPolicy(source="/ckpt/iter2"), VllmPolicy(source="/ckpt/iter1", load_in_4bit=True)]
    others.append(VllmPolicy(source="/ckpt/iter1", adapter_ids=["0:/a#2"]))
    assert len({p.fingerprint() for p in [base, *others]}) == 4


def test_engine_kwargs_from_spec() -> None:
    spec = C.PolicySpec(name="Qwen/Qwen2.5-1.5B-Instruct", revision="abc", load_in_4bit=True, vllm_gpu_memory=0.4)
    hub = VllmPolicy.from_spec(spec, spec.name)
    assert vllm_backend.engine_kwargs(hub) == {
        "model": "Qwen/Qwen2.5-1.5B-Instruct",
        "tokenizer": "Qwen/Qwen2.5-1.5B-Instruct",
        "dtype": "auto",  # the spec's default: vLLM's own 'auto' (the checkpoint's dtype)
        "gpu_memory_utilization": 0.4,
        "seed": 0,
        "revision": "abc",
        "quantization": "bitsandbytes",
    }
    merged = vllm_backend.engine_kwargs(VllmPolicy.from_spec(C.PolicySpec(), "/run/merged/iter1"))
    assert "revision" not in merged and "quantization" not in merged and merged["model"] == "/run/merged/iter1"


def test_clear_error_without_vllm_or_gpu() -> None:
    with pytest.raises(
        VllmUnavailableError, match=r"'vllm' is not installed: `pip install vllm`.*policy.backend=transformers"
    ):
        vllm_backend.check_available(has_vllm=False, has_cuda=True)
    with pytest.raises(VllmUnavailableError, match="no CUDA GPU is visible.*policy.backend=transformers"):
        vllm_backend.check_available(has_vllm=True, has_cuda=False)
    vllm_backend.check_available(has_vllm=True, has_cuda=True)
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(VllmUnavailableError, match="pip install vllm"):
            vllm_backend.check_available()


def test_policy_backend_is_validated_and_keeps_default_stage_keys() -> None:
    cfg = C.load(ROOT / "configs" / "smoke.yaml")
    assert cfg.policy.backend == "transformers" and "backend" in C.to_dict(cfg)["policy"]
    assert "backend" not in C.key_dict(cfg)["policy"]  # runs recorded before the field existed stay complete
    vllm = C.load(ROOT / "configs" / "smoke.yaml", ["policy.backend=vllm"])
    assert C.config_hash(vllm) != C.config_hash(cfg) and C.key_dict(vllm)["policy"]["backend"] == "vllm"
    with pytest.raises(C.ConfigError, match="policy.backend: 'tgi' is not one of"):
        C.load(ROOT / "configs" / "smoke.yaml", ["policy.backend=tgi"])
    with pytest.raises(C.ConfigError, match="attacker.backend: unknown key"):
        C.load(ROOT / "configs" / "smoke.yaml", ["attacker.backend=vllm"])
    with pytest.raises(C.ConfigError, match="policy.vllm_gpu_memory"):
        C.load(ROOT / "configs" / "smoke.yaml", ["policy.vllm_gpu_memory=1.5"])


def test_load_policy_fails_clearly_before_loading_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = C.load(ROOT / "configs" / "smoke.yaml", ["policy.backend=vllm"])
    monkeypatch.setattr(vllm_backend.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(policy, "load_model", lambda *a, **k: pytest.fail("weights loaded"))
    with pytest.raises(VllmUnavailableError, match="pip install vllm"):
        policy.load_policy(cfg, tmp_path, 0)


def _fake_merge(saved: list[Path]):
    def merged(cfg: Any, chain: list[Path]) -> tuple[Any, Any]:
        def save_pretrained(target: Path) -> None:
            Path(target).mkdir(parents=True, exist_ok=True)
            (Path(target) / "config.json").write_text(json.dumps({"chain": [str(p) for p in chain]}))
            saved.append(Path(target))

        model = SimpleNamespace(save_pretrained=save_pretrained)
        return model, SimpleNamespace(save_pretrained=lambda target: None)

    return merged


def test_load_policy_serves_the_saved_merged_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    adapter = run / "iter0" / "06_align" / policy.ADAPTER_DIR
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    cfg = C.load(ROOT / "configs" / "smoke.yaml", ["policy.backend=vllm", "policy.vllm_gpu_memory=0.3"])
    saved: list[Path] = []
    loaded: list[str] = []
    monkeypatch.setattr(vllm_backend, "check_available", lambda: None)
    monkeypatch.setattr(policy, "check_vllm", lambda: None)
    monkeypatch.setattr(policy, "_merged", _fake_merge(saved))
    monkeypatch.setattr(
        policy, "load_model", lambda spec, cache_dir: (loaded.append(spec.name) or SimpleNamespace(), "tok")
    )
    for _ in range(2):
        model, tok = policy.load_policy(cfg, run, 1)
    target = run / "merged" / "iter1"
    assert saved == [target] and loaded == [str(target)] * 2  # merged once, then reused
    vp = model.selfmoa_vllm
    assert vp.source == str(target) and vp.gpu_memory == 0.3 and vp.adapter_ids == policy.adapter_ids([adapter])
    monkeypatch.setattr(policy, "load_model", lambda spec, cache_dir: (SimpleNamespace(), "tok"))
    base, _ = policy.load_policy(cfg, run, 0)  # no adapters yet: the base checkpoint itself
    assert (
        base.selfmoa_vllm.source == str(policy.resolve(cfg.policy, cfg.cache_dir))
        and base.selfmoa_vllm.adapter_ids == []
    )
    plain, _ = policy.load_policy(C.load(ROOT / "configs" / "smoke.yaml"), run, 0)
    assert not hasattr(plain, "selfmoa_vllm")


def test_respond_dispatches_to_vllm_through_the_engine_slot(tok: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`Responder` sends a policy that carries a VllmPolicy to vLLM; the engine is built once per checkpoint."""
    import sys
    import types
    from importlib.machinery import ModuleSpec

    built: list[FakeEngine] = []

    def make_llm(**kwargs: Any) -> FakeEngine:
        built.append(FakeEngine(**kwargs))
        return built[-1]

    fake = types.ModuleType("vllm")
    fake.__spec__ = ModuleSpec("vllm", None)
    fake.LLM = make_llm
    fake.SamplingParams = dict
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setattr(vllm_backend, "check_available", lambda: None)
    monkeypatch.setattr(vllm_backend, "_ENGINE", {})
    model = SimpleNamespace(selfmoa_vllm=POLICY)
    out = policy.Responder(model, tok, max_new_tokens=4, batch_size=2, seed=0, k=2).respond(["hi", "there"])
    assert [len(r) for r in out] == [2, 2] and len(built) == 1 and built[0].kwargs["model"] == POLICY.source
    policy.Responder(model, tok, max_new_tokens=4, batch_size=2, seed=0).respond(["again"])
    assert len(built) == 1 and len(built[0].calls) == 2
    other = SimpleNamespace(selfmoa_vllm=VllmPolicy(source="/ckpt/iter2"))
    policy.Responder(other, tok, max_new_tokens=4, batch_size=2, seed=0).respond(["hi"])
    assert len(built) == 2 and built[1].kwargs["model"] == "/ckpt/iter2"
