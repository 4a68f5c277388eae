"""Seeds: one base seed per run, a derived seed per stage and iteration."""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import os
import random
import sys
from types import ModuleType
from typing import Any

import numpy as np


def derive_seed(base: int, stage: str, iteration: int = 0) -> int:
    """A stable 31-bit seed for (base seed, stage name, iteration), independent of Python's hash salt."""
    digest = hashlib.sha256(f"{base}:{stage}:{iteration}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class _SeedTorchOnImport(importlib.abc.MetaPathFinder):
    """Seeds torch right after its first import in this process (then leaves `sys.meta_path`).

    Importing torch costs about 0.3 GiB of resident memory; processes that seed but never use it (the 07b kernel,
    a variant's process while its loop stages run in their own kernels, the report) are spared it. Torch's
    random stream is the same either way: nothing can draw from it before it is imported.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "torch":
            return None
        # the other finders' spec (a lookup such as `importlib.util.find_spec("torch")` may not import it)
        others = (f for f in sys.meta_path if f is not self and hasattr(f, "find_spec"))
        spec = next((s for f in others if (s := f.find_spec(fullname, path, target)) is not None), None)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_seed(module: ModuleType) -> None:
            exec_module(module)
            if self in sys.meta_path:
                sys.meta_path.remove(self)
            module.manual_seed(self.seed)

        spec.loader.exec_module = exec_and_seed  # type: ignore[method-assign]
        return spec


def _pending_torch_seed() -> _SeedTorchOnImport | None:
    return next((f for f in sys.meta_path if isinstance(f, _SeedTorchOnImport)), None)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch: now if torch is imported, else as soon as it is (when it is installed)."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(seed)
        return
    pending = _pending_torch_seed()
    if pending is not None:
        pending.seed = seed
    else:
        sys.meta_path.insert(0, _SeedTorchOnImport(seed))
