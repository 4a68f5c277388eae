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

    Importing torch costs about 0.3 GiB of resident memory; processes that seed but never use it (07b's kernel,
    a variant's process while its loop stages run in kernels of their own, the report) are spared it. Torch's
    random stream is the same either way: nothing can draw from it before it is imported.
    """

    seeds_torch_on_import = True  # the marker every copy of this finder carries (a reloaded module makes a new class)

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "torch":
            return None
        # the spec the other finders give (a lookup such as `importlib.util.find_spec("torch")` does not import)
        others = [f for f in sys.meta_path if not _seeds_torch(f) and hasattr(f, "find_spec")]
        spec = next((s for f in others if (s := f.find_spec(fullname, path, target)) is not None), None)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_and_seed(module: ModuleType) -> None:
            exec_module(module)
            del loader.exec_module  # the loader's own method again
            for finder in [f for f in sys.meta_path if _seeds_torch(f)]:
                sys.meta_path.remove(finder)
            module.manual_seed(self.seed)

        loader.exec_module = exec_and_seed
        return spec


def _seeds_torch(finder: object) -> bool:
    """Whether `finder` is a pending torch seed (of this module or of an earlier load of it)."""
    return getattr(finder, "seeds_torch_on_import", False)


def _pending_torch_seed() -> Any:
    return next((f for f in sys.meta_path if _seeds_torch(f)), None)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch: now if torch is imported, else as soon as it is (when it is installed)."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    if "torch" in sys.modules:
        import torch  # waits for an import another thread may have under way

        torch.manual_seed(seed)
        return
    pending = _pending_torch_seed()
    if pending is not None:
        pending.seed = seed
    else:
        sys.meta_path.insert(0, _SeedTorchOnImport(seed))
