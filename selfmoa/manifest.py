"""Facts recorded in every stage manifest: git commit, package versions, machine."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess

from selfmoa.paths import ROOT

TRACKED_PACKAGES = (
    "selfmoa",
    "torch",
    "transformers",
    "trl",
    "peft",
    "accelerate",
    "datasets",
    "bitsandbytes",
    "gguf",
    "sentence-transformers",
    "scikit-learn",
    "papermill",
    "numpy",
    "pandas",
)


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """Current commit of the repository, with '-dirty' when tracked files changed; None outside git."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True)
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed versions (None when a package is absent)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine_info() -> dict[str, object]:
    """Python, platform, CPU count and accelerator, for manifests and benchmark records."""
    import os

    info: dict[str, object] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
    }
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["cuda"] = None
    return info


def environment() -> dict[str, object]:
    """Everything a manifest records about where it was produced."""
    return {"git_commit": git_commit(), "packages": package_versions(), "machine": machine_info()}
