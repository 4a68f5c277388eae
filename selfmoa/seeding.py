"""Seeds: one base seed per run, a derived seed per stage and iteration."""

from __future__ import annotations

import hashlib
import os
import random

import numpy as np


def derive_seed(base: int, stage: str, iteration: int = 0) -> int:
    """A stable 31-bit seed for (base seed, stage name, iteration), independent of Python's hash salt."""
    digest = hashlib.sha256(f"{base}:{stage}:{iteration}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (when installed) torch."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)
