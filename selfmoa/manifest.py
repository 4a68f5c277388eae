"""Facts recorded in every stage manifest: git commit, package versions, machine."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path

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


CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8", "amx_tile")


def cpu_info(cpuinfo: str | None = None) -> dict[str, object]:
    """CPU model name and the flags that decide bf16 speed (AVX-512 bf16, AMX) from /proc/cpuinfo.

    Different x86 CPUs run different bf16 kernels at very different speeds (and so may give different
    greedy paths), so every benchmark record names the CPU it was measured on. `cpuinfo` is the file's
    text (read from /proc/cpuinfo when None); without it the model name comes from `platform.processor()`.
    """
    import platform

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    flags = set(fields.get("flags", "").split())
    return {
        "model_name": fields.get("model name") or platform.processor() or None,
        "flags": {f: f in flags for f in CPU_FLAGS},
        "bf16": "avx512_bf16" in flags or "amx_bf16" in flags,
        "amx": "amx_bf16" in flags,
    }


def machine_info(import_torch: bool = True) -> dict[str, object]:
    """Python, platform, CPU model and bf16 flags, CPU count and accelerator, for manifests and benchmarks.

    Torch's threads and accelerator are read only where torch is imported already, unless `import_torch`: a
    stage manifest of a process that never used torch (07b's kernel, the report) records None rather than load
    0.3 GiB of torch to ask.
    """
    import os
    import sys

    info: dict[str, object] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpu": cpu_info(),
    }
    if not import_torch and "torch" not in sys.modules:
        info["torch_threads"] = info["cuda"] = None
        return info
    try:
        import torch

        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["cuda"] = None
    return info


def peak_rss_gib() -> dict[str, float | None]:
    """Peak resident memory so far of this process and of its largest finished child process, in GiB.

    A stage runs in its own notebook kernel, so at `finish` this is the stage's own peak (children: the
    processes it started, e.g. one per study variant). None where `resource` does not exist (Windows).
    """
    try:
        import resource
    except ImportError:
        return {"self": None, "children": None}
    scale = 1024 / 2**30 if platform.system() != "Darwin" else 1 / 2**30  # ru_maxrss: KiB on Linux, bytes on macOS
    return {
        "self": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, 3),
        "children": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale, 3),
    }


def environment() -> dict[str, object]:
    """Everything a manifest records about where it was produced (torch's settings only where torch is in use)."""
    return {"git_commit": git_commit(), "packages": package_versions(), "machine": machine_info(import_torch=False)}
