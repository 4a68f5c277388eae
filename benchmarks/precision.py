"""Precision: bfloat16 against float32 on this CPU, and whether `dtype: auto` picks the faster one.

torch computes bf16 matrix products with native instructions only on CPUs with AVX512-BF16 or AMX; elsewhere
(an AVX2-only CPU, for example) it falls back to generic kernels. `selfmoa.models.resolve_dtype('auto')` picks
bfloat16 where `native_bf16()` says the CPU has them, float32 elsewhere (the `cpu` and `smoke` profiles use
`dtype: auto`). Measured in one process: a 256 x 2048 x 2048 matrix product in each dtype (GFLOP/s, best of 5), and greedy
generation with the embedded policy in each dtype (the same prompts, `selfmoa.generation.generate`, batches of
`batch`), alternating. Baseline: the dtype `auto` does not pick; project: the one it picks. The check: the
picked dtype generates at least as fast as the other (ratio >= 1).
"""

from __future__ import annotations

from typing import Any

from benchmarks.common import check, load_policy, matmul_peak, mixed_prompts, record, speedup, timed


def run(quick: bool = False) -> dict[str, Any]:
    """bf16 vs float32 matmul and generation speed, and the dtype `auto` resolves to here."""
    from selfmoa.generation import generate
    from selfmoa.models import native_bf16, resolve_dtype

    n, new_tokens, batch, rounds = (4, 4, 4, 1) if quick else (32, 32, 32, 2)
    prompts = mixed_prompts(n)
    picked = resolve_dtype("auto")
    other = "float32" if picked == "bfloat16" else "bfloat16"
    gflops = {d: matmul_peak(d, rows=256, repeats=2 if quick else 5) for d in ("float32", "bfloat16")}
    models = {d: load_policy(d) for d in (picked, other)}
    seconds = dict.fromkeys(models, 0.0)
    for _ in range(rounds):
        for d, (model, tok) in models.items():
            _, s = timed(generate, model, tok, prompts, max_new_tokens=new_tokens, batch_size=batch, progress=False)
            seconds[d] += s
    ratio = speedup(seconds[other], seconds[picked], higher_is_better=False)
    return record(
        baseline=seconds[other],
        project=seconds[picked],
        ratio=ratio,
        ratio_definition=f"generation seconds in {other} / in {picked} (the dtype `auto` picks here)",
        unit="s",
        checks=[check("picked dtype generates at least as fast", ratio, ">=", 1.0)],
        details={
            "native_bf16": native_bf16("cpu"),
            "auto_dtype": picked,
            "matmul_gflops": gflops,
            "generation_seconds": seconds,
            "n_prompts": n,
            "max_new_tokens": new_tokens,
            "batch_size": batch,
            "rounds": rounds,
        },
    )
