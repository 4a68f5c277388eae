"""One held-out evaluation pass with each decoder: `model.generate`, the fast loop, and the fast loop that drops
ended rows (`sampling.decoder`: reference, fast, compact).

The workload is the `cpu` profile's evaluation pass, through the stage's own evaluation `Responder`: every held-out
prompt (`selfmoa.data.eval_rows`, 485 rows), one greedy answer of at most `eval.max_new_tokens` tokens, batches of
`eval.batch_size` (length-sorted, as `selfmoa.generation.generate` makes them), no generation cache. The three decoders run one after another in one
process on the same model. Baseline: the reference decoder; project: the compact one. Besides seconds, each
decoder's answers are compared with the reference (identical fraction; bf16 values depend on the batch a row is
in) and judged by the refusal-phrase judge: the refusal rates must agree within 0.02 (this project's tolerance,
about 10 of 485 prompts).

The benchmark set uses the embedded policy, which rarely refuses, so most rows run to the length limit; a trained
policy ends many answers early (short refusals), which is where dropping ended rows pays. Measure one with

    python -m benchmarks.decoders --run data/runs/cpu-seed0 --iteration 3   # the policy after 3 rounds
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from benchmarks.common import RESULTS_PATH, check, record, run_meta, speedup, timed, write_results

DECODER_ORDER = ("reference", "fast", "compact")
MAX_REFUSAL_GAP = 0.02
TARGET_SECONDS = 45.0  # issue target: one evaluation pass of a model on the cpu profile's held-out sets


def measure(model: Any, tok: Any, cfg: Any, prompts: list[str]) -> dict[str, Any]:
    """Seconds, answers, refusal rate and agreement with the reference of each decoder on `prompts`: the
    evaluation `Responder` of `cfg` (its length, batch size and seed), without the generation cache."""
    from dataclasses import replace

    from selfmoa.judging import refused_flags
    from selfmoa.policy import Responder

    responder = Responder.from_config(cfg, model, tok, "eval", cfg.seed, cache=False)
    out: dict[str, Any] = {}
    for decoder in DECODER_ORDER:
        answers, seconds = timed(replace(responder, decoder=decoder), prompts)
        tokens = sum(len(ids) for ids in tok(answers, add_special_tokens=False)["input_ids"])
        refusal = sum(refused_flags(answers)) / len(answers)
        out[decoder] = {"seconds": seconds, "answers": answers, "refusal_rate": refusal, "tokens": tokens}
    ref = out["reference"]["answers"]
    for decoder in DECODER_ORDER:
        same = sum(a == b for a, b in zip(out[decoder]["answers"], ref, strict=True))
        out[decoder]["identical_to_reference"] = same / len(ref)
        out[decoder]["tokens_per_s"] = out[decoder]["tokens"] / out[decoder]["seconds"]
    return out


def decoder_record(measured: dict[str, Any], n: int, max_new_tokens: int, batch_size: int, policy: str) -> dict:
    """The benchmark record of `measure`'s result (answers left out)."""
    ref, proj = measured["reference"], measured["compact"]
    gaps = {d: abs(measured[d]["refusal_rate"] - ref["refusal_rate"]) for d in DECODER_ORDER}
    return record(
        baseline=ref["seconds"],
        project=proj["seconds"],
        ratio=speedup(ref["seconds"], proj["seconds"], higher_is_better=False),
        ratio_definition="seconds of one evaluation pass: reference decoder / compact decoder",
        unit="s",
        checks=[
            check("evaluation pass seconds (compact)", proj["seconds"], "<=", TARGET_SECONDS),
            check("refusal-rate gap to the reference (worst decoder)", max(gaps.values()), "<=", MAX_REFUSAL_GAP),
        ],
        details={
            "policy": policy,
            "n_prompts": n,
            "max_new_tokens": max_new_tokens,
            "batch_size": batch_size,
            "decoders": {d: {k: v for k, v in m.items() if k != "answers"} for d, m in measured.items()},
        },
    )


def _workload(config: Path, quick: bool = False) -> tuple[Any, list[str]]:
    """The config (quick: 8 new tokens, batches of 8) and its held-out prompts (quick: every 40th)."""
    from selfmoa import config as C
    from selfmoa.data import eval_rows

    cfg = C.load(config, ["eval.max_new_tokens=8", "eval.batch_size=8"] if quick else [])
    prompts = [r["prompt"] for r in eval_rows(cfg)]
    return cfg, prompts[::40] if quick else prompts


def _record(measured: dict[str, Any], cfg: Any, n: int, policy: str) -> dict[str, Any]:
    return decoder_record(measured, n, cfg.eval.max_new_tokens, cfg.eval.batch_size, policy)


def run(quick: bool = False) -> dict[str, Any]:
    """The `cpu` profile's evaluation pass with each decoder on the embedded policy (project precision, frozen)."""
    from benchmarks.common import load_policy
    from selfmoa.paths import resolve_path

    cfg, prompts = _workload(resolve_path("configs/cpu.yaml"), quick)
    model, tok = load_policy("auto")
    model.requires_grad_(False)
    return _record(measure(model, tok, cfg, prompts), cfg, len(prompts), "embedded SmolLM2-135M-Instruct")


def main(argv: list[str] | None = None) -> int:
    """`--run DIR --iteration K`: the same measurement on the policy a run trained, recorded as `decoders_run`."""
    from selfmoa import policy

    parser = argparse.ArgumentParser(prog="python -m benchmarks.decoders", description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a run folder, e.g. data/runs/cpu-seed0")
    parser.add_argument("--iteration", type=int, required=True, help="the policy at the start of this iteration")
    parser.add_argument("--output", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    resolved = args.run / "config.yaml"
    if not resolved.is_file():
        raise SystemExit(f"{resolved}: not found; give a run folder (`selfmoa run` writes this file)")
    cfg, prompts = _workload(resolved)  # the run's own held-out sets and evaluation settings
    model, tok = policy.load_policy(cfg, args.run, args.iteration)
    rec = _record(measure(model, tok, cfg, prompts), cfg, len(prompts), f"{args.run} iteration {args.iteration}")
    write_results(args.output, run_meta(), {"decoders_run": rec})
    for d in DECODER_ORDER:
        m = rec["details"]["decoders"][d]
        print(
            f"{d}: {m['seconds']:.1f} s, {m['tokens_per_s']:.0f} tokens/s, refusal {m['refusal_rate']:.3f}, "
            f"identical {m['identical_to_reference']:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
