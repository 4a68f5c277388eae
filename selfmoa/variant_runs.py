"""Study variants (stage 07b), one process each: train, evaluate, write `<07b>/<name>/result.json`; resumable.

`run_all` (the 07b notebook) starts `selfmoa variant --name <name>` per variant that has no matching
`result.json`, one after the other, so each variant's models, judges and caches leave memory with its process;
the notebook's own kernel loads no model. In the child, `run_in_process` trains the variant:

- one round from the starting policy (`selfmoa.variants` groups static, data, weights, objective, noise);
- the static curated baseline on the loop's schedule: T rounds of fresh curated pairs, each round trained on
  the model of the previous one (adapters `adapter_round<t>/` of the variant folder, each round resumable).
  Each round trains in a process of its own (`selfmoa variant --round t`, started by the variant's process),
  so neither the next round nor the evaluation inherits what a round leaves resident (trainer objects,
  allocator caches, the heap glibc keeps after its activations are freed): three rounds and the evaluation
  in one process reached 6.5 GiB in the cpu study;
- a loop variant: the loop's stages 02-06 for T rounds with the variant's overrides, in a run folder of its
  own, `<run>--<name>` (with its own run lock), that starts from the main run's starting policy: every stage of
  the main run, in run order, whose key the variant leaves unchanged (00_setup, 01_safety_reset, and the
  round-0 stages the override does not reach) is copied, manifest last, instead of recomputed. The subrun is
  executed with `selfmoa.pipeline.run` (papermill, one kernel per stage), so a killed variant resumes stage by
  stage.

Each variant's final model then answers the held-out prompts with the seed of `07_evaluate` and the evaluation
judges. A child dies with its parent (PR_SET_PDEATHSIG on Linux), so a killed 07b leaves no variant running.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from selfmoa import artifacts
from selfmoa import config as C
from selfmoa.variants import Variant, variant_config, variant_key

log = logging.getLogger(__name__)

RESULT = "result.json"


def subrun_id(run_id: str, variant: Variant) -> str:
    """Run folder name of a loop variant: `<run>--<variant name>`."""
    return f"{run_id}--{variant.name}"


def finished(ctx: Any, variant: Variant) -> dict[str, Any] | None:
    """The variant's saved result when its key matches what this config would compute now, else None."""
    path = ctx.path(variant.name) / RESULT
    if not path.is_file():
        return None
    result = artifacts.read_json(path)
    return result if result.get("key") == variant_key(ctx.cfg, ctx.stage, ctx.upstream, variant) else None


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def variant_command(
    config_path: str | Path, run_id: str, name: str, overrides: Sequence[str], round_: int | None = None
) -> list[str]:
    """The child's command line: `python -m selfmoa.cli variant ...` (with `round_`: that round's training only)."""
    cmd = [sys.executable, "-m", "selfmoa.cli", "variant", "--config", str(config_path), "--run-id", run_id]
    for o in overrides:
        cmd += ["--set", o]
    if round_ is not None:
        cmd += ["--round", str(round_)]
    return cmd + ["--name", name]


def run_child(cmd: list[str], what: str) -> None:
    """Run `cmd` to completion in a child process that dies with this one; a RuntimeError naming `what` and
    ending with the child's stderr when it fails."""
    from selfmoa.paths import ROOT

    log.info("%s: %s", what, " ".join(cmd))
    proc = subprocess.run(cmd, cwd=ROOT, preexec_fn=_die_with_parent, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


def run_all(
    ctx: Any, plan: Sequence[Variant], config_path: str | Path, overrides: Sequence[str] = (), force: bool = False
) -> list[dict[str, Any]]:
    """Every variant's result: loaded when finished, otherwise computed in a child process (one at a time).

    With `force`, every variant's folder (and a loop variant's run folder) is removed first, so all retrain.
    """
    from selfmoa.paths import run_dir

    results = []
    for v in plan:
        if force and not ctx.complete:
            for folder in (ctx.path(v.name), run_dir(ctx.cfg.runs_dir, subrun_id(ctx.run.name, v))):
                shutil.rmtree(folder, ignore_errors=True)
        done = finished(ctx, v)
        if done is None:
            run_child(variant_command(config_path, ctx.run.name, v.name, overrides), f"variant {v.name}")
            done = finished(ctx, v)
            if done is None:
                raise RuntimeError(f"variant {v.name}: the child exited 0 but left no matching {RESULT}")
        results.append(done)
    return results


def _open(config_path: str | Path, run_id: str, name: str, overrides: Sequence[str]) -> tuple[Any, Variant]:
    """(stage context of 07b, the variant named `name` in its plan)."""
    from selfmoa import variants

    ctx = artifacts.open_stage(config_path, run_id, "07b_variants", overrides=list(overrides))
    by_name = {v.name: v for v in variants.plan(ctx.cfg)}
    if name not in by_name:
        raise ValueError(f"variant {name!r} is not in this config's plan; planned: {sorted(by_name)}")
    return ctx, by_name[name]


def run_in_process(config_path: str | Path, run_id: str, name: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Train and evaluate one variant of run `run_id` in this process (`selfmoa variant`); returns its result.

    A static-schedule variant trains each round in a child process (`train_round_in_process`) and evaluates here.
    """
    ctx, variant = _open(config_path, run_id, name, overrides)
    done = finished(ctx, variant)
    if done is not None:
        return done
    t0 = time.time()
    if variant.data == "loop":
        model_dir, rounds = run_loop(ctx, variant, config_path, overrides)
    elif variant.data == "curated_schedule":

        def train_round(t: int) -> None:
            cmd = variant_command(config_path, run_id, name, overrides, round_=t)
            run_child(cmd, f"variant {name} round {t}")

        model_dir, rounds = run_static_schedule(ctx, variant, train_round)
    else:
        model_dir, rounds = run_one_round(ctx, variant)
    result = evaluate_and_save(ctx, variant, model_dir, rounds)
    result["seconds"] = round(time.time() - t0, 1)
    artifacts.write_json(ctx.path(variant.name) / RESULT, result)
    return result


# ---- training ----


def _train_round(
    ctx: Any, cfg: C.RunConfig, pairs: list[dict[str, Any]], adapters: list[Path], out: Path, t: int
) -> dict[str, Any]:
    """One preference round from the starting policy plus `adapters`, seeded like the loop's 06_align@t."""
    from selfmoa import policy, training
    from selfmoa.models import release_memory
    from selfmoa.seeding import derive_seed

    model, tok = policy.load_policy(cfg, ctx.run, 0, extra_adapters=adapters)
    trained = training.train_preference(model, tok, pairs, cfg.train, out, seed=derive_seed(cfg.seed, "06_align", t))
    metrics = training.stage_metrics(trained)
    del model, trained
    release_memory()
    return metrics


def _round0_inputs(ctx: Any) -> dict[str, list[dict[str, Any]]]:
    if not ctx.cfg.iterations:
        return {"loop_pairs": [], "judged": []}
    return {
        "loop_pairs": artifacts.read_jsonl(ctx.upstream_dir("05_pairs", 0) / "pairs.jsonl"),
        "judged": artifacts.read_jsonl(ctx.upstream_dir("04_judge", 0) / "judged.jsonl"),
    }


def run_one_round(ctx: Any, variant: Variant) -> tuple[list[Path], list[dict[str, Any]]]:
    """One round from the starting policy on the variant's pairs (`selfmoa.variants.variant_pairs`)."""
    from selfmoa import data, pairs, policy, variants

    cfg = variant_config(ctx.cfg, variant)
    built = variants.variant_pairs(
        variant, cfg, curated=data.static_curated_pairs(), seed=ctx.seed, **_round0_inputs(ctx)
    )
    pairs.assert_no_eval_prompts(built, data.eval_prompt_texts(cfg))
    adapter = ctx.path(variant.name) / policy.ADAPTER_DIR
    train = _train_round(ctx, cfg, built, [], adapter, 0)
    return [adapter], [_round_row(0, built, train)]


def _round_row(t: int, built: Sequence[dict[str, Any]], train: dict[str, Any]) -> dict[str, Any]:
    from selfmoa.variants import source_counts

    return {"round": t + 1, "n_pairs": len(built), "sources": source_counts(built), "train": train}


def _static_plan(ctx: Any, variant: Variant) -> tuple[C.RunConfig, list[list[dict[str, Any]]], dict[str, Any]]:
    """(variant config, curated pairs of each round, schedule info) of a static-schedule variant."""
    from selfmoa import data, pairs, variants

    cfg = variant_config(ctx.cfg, variant)
    pool = pairs.curated_pairs(data.static_curated_pairs(), ctx.seed)
    schedule, info = variants.static_schedule(pool, cfg.iterations, int(variant.n_pairs or 0), ctx.seed)
    return cfg, schedule, info


def round_paths(ctx: Any, variant: Variant, t: int) -> tuple[Path, Path]:
    """(adapter folder, marker file) of round `t` of a static-schedule variant."""
    folder = ctx.path(variant.name)
    return folder / f"adapter_round{t}", folder / f"round{t}.json"


def finished_round(ctx: Any, variant: Variant, t: int) -> dict[str, Any] | None:
    """Round `t`'s saved row when it finished under this config (marker key matches, adapter saved), else None."""
    adapter, marker = round_paths(ctx, variant, t)
    saved = artifacts.read_json(marker) if marker.is_file() else {}
    key = variant_key(ctx.cfg, ctx.stage, ctx.upstream, variant)
    return saved["row"] if saved.get("key") == key and (adapter / "adapter_config.json").is_file() else None


def train_static_round(ctx: Any, variant: Variant, t: int) -> dict[str, Any]:
    """Train round `t` of a static-schedule variant in this process on the model of round t-1; write its marker."""
    from selfmoa import data, pairs

    cfg, schedule, _ = _static_plan(ctx, variant)
    if not 0 <= t < len(schedule):
        raise ValueError(f"variant {variant.name}: round {t} is not one of its {len(schedule)} rounds")
    missing = [s for s in range(t) if finished_round(ctx, variant, s) is None]
    if missing:
        raise RuntimeError(f"variant {variant.name}: round {t} trains on rounds {missing}, which have not finished")
    chunk = schedule[t]
    pairs.assert_no_eval_prompts(chunk, data.eval_prompt_texts(cfg))
    adapters = [round_paths(ctx, variant, s)[0] for s in range(t)]
    adapter, marker = round_paths(ctx, variant, t)
    row = _round_row(t, chunk, _train_round(ctx, cfg, chunk, adapters, adapter, t))
    artifacts.write_json(marker, {"key": variant_key(ctx.cfg, ctx.stage, ctx.upstream, variant), "row": row})
    return row


def train_round_in_process(
    config_path: str | Path, run_id: str, name: str, t: int, overrides: Sequence[str] = ()
) -> dict[str, Any]:
    """Round `t` of static-schedule variant `name` in this process (`selfmoa variant --round t`); returns its row."""
    ctx, variant = _open(config_path, run_id, name, overrides)
    if variant.data != "curated_schedule":
        raise ValueError(f"variant {name!r} has no rounds of its own: --round is for the static_sched_* variants")
    row = finished_round(ctx, variant, t)
    return row if row is not None else train_static_round(ctx, variant, t)


def run_static_schedule(
    ctx: Any, variant: Variant, train_round: Callable[[int], None]
) -> tuple[list[Path], list[dict[str, Any]]]:
    """The static curated baseline on the loop's schedule: `iterations` rounds, each from the previous model.

    `train_round(t)` trains round t (in a process of its own: `train_round_in_process`) and is called, in order,
    for each round without a finished marker (rounds finished before an interruption are kept).
    """
    from selfmoa import data, pairs

    cfg, schedule, info = _static_plan(ctx, variant)
    eval_texts = data.eval_prompt_texts(cfg)
    rows = []
    for t, chunk in enumerate(schedule):
        pairs.assert_no_eval_prompts(chunk, eval_texts)
        row = finished_round(ctx, variant, t)
        if row is None:
            train_round(t)
            row = finished_round(ctx, variant, t)
        if row is None:
            raise RuntimeError(f"variant {variant.name}: round {t} finished but left no matching marker")
        rows.append(row)
    rows[0]["schedule"] = info
    return [round_paths(ctx, variant, t)[0] for t in range(len(schedule))], rows


def shared_steps(cfg: C.RunConfig, main: Path) -> list[tuple[str, int | None]]:
    """The main run's steps a variant run can reuse: in run order, up to the first whose key the variant changes."""
    from selfmoa.artifacts import is_complete
    from selfmoa.stages import LOOP_STAGES, ONCE_BEFORE

    order = [(s, None) for s in ONCE_BEFORE] + [(s, t) for t in range(cfg.iterations) for s in LOOP_STAGES]
    out: list[tuple[str, int | None]] = []
    for stage, it in order:
        if not is_complete(cfg, main, stage, it):
            break
        out.append((stage, it))
    return out


def link_shared(cfg: C.RunConfig, main: Path, sub: Path) -> list[str]:
    """Copy the main run's shared steps (`shared_steps`) into the variant run, each stage's manifest last.

    A step already copied (same manifest) is left alone; 00_setup and 01_safety_reset must be shared, since a
    variant starts from the main run's starting policy and never retrains the reset.
    """
    from selfmoa.paths import stage_dir

    steps = shared_steps(cfg, main)
    if [s for s, _ in steps[:2]] != ["00_setup", "01_safety_reset"]:
        raise RuntimeError(
            f"run {main.name}: 00_setup and 01_safety_reset must be complete under the variant's config before a loop "
            "variant can start from them (run the main loop first; a variant may not change their config sections)"
        )
    copied = []
    for stage, it in steps:
        src, dst = stage_dir(main, stage, it), stage_dir(sub, stage, it)
        manifest = (src / "manifest.json").read_bytes()
        if (dst / "manifest.json").is_file() and (dst / "manifest.json").read_bytes() == manifest:
            continue
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(src, dst, ignore=shutil.ignore_patterns("manifest.json", ".*"))
        artifacts.atomic_write_bytes(dst / "manifest.json", manifest)
        copied.append(stage if it is None else f"{stage}@{it}")
    return copied


def loop_overrides(variant: Variant, overrides: Sequence[str]) -> list[str]:
    """Overrides of a loop variant's run: the main run's, the variant's own, only the loop stages, no publishing."""
    from selfmoa.stages import LOOP_STAGES

    own = [f"{k}={json.dumps(v)}" for k, v in variant.overrides.items()]
    return [*overrides, *own, f"stages={json.dumps(list(LOOP_STAGES))}", "publish=false"]


def run_loop(
    ctx: Any, variant: Variant, config_path: str | Path, overrides: Sequence[str]
) -> tuple[list[Path], list[dict[str, Any]]]:
    """Stages 02-06 for every round with the variant's overrides in `<run>--<name>`, from the main start."""
    from selfmoa import pipeline, runlock
    from selfmoa.paths import resolve_path, run_dir, stage_dir
    from selfmoa.variants import source_counts

    sub_overrides = loop_overrides(variant, overrides)
    cfg = C.load(resolve_path(config_path), sub_overrides)
    sub = run_dir(cfg.runs_dir, subrun_id(ctx.run.name, variant))
    with runlock.hold(sub):
        copied = link_shared(cfg, ctx.run, sub)
        log.info("variant %s: copied %s from %s", variant.name, copied or "nothing new", ctx.run.name)
        pipeline.run(config_path, sub.name, sub_overrides)
    rows = []
    for t in range(cfg.iterations):
        built = artifacts.read_jsonl(stage_dir(sub, "05_pairs", t) / "pairs.jsonl")
        train = artifacts.read_json(stage_dir(sub, "06_align", t) / "metrics.json")
        rows.append({"round": t + 1, "n_pairs": len(built), "sources": source_counts(built), "train": train})
    rows[0]["subrun"] = sub.name
    return [Path("subrun", sub.name)], rows


# ---- evaluation ----


def _load_final(ctx: Any, cfg: C.RunConfig, variant: Variant, model_dir: list[Path]) -> tuple[Any, Any]:
    from selfmoa import policy
    from selfmoa.paths import run_dir

    if variant.data == "loop":
        return policy.load_policy(cfg, run_dir(cfg.runs_dir, model_dir[0].name), cfg.iterations)
    return policy.load_policy(cfg, ctx.run, 0, extra_adapters=model_dir)


def evaluate_and_save(
    ctx: Any, variant: Variant, model_dir: list[Path], rounds: list[dict[str, Any]]
) -> dict[str, Any]:
    """The variant's final model on the held-out sets (seed of 07_evaluate); records, per-set rates, result."""
    from selfmoa import capability, data, heldout
    from selfmoa.evaluation import model_summary
    from selfmoa.generation import generation_cache
    from selfmoa.judges.factory import stage_judges
    from selfmoa.models import release_memory
    from selfmoa.seeding import derive_seed
    from selfmoa.variants import capability_wanted

    cfg = variant_config(ctx.cfg, variant)
    folder = ctx.path(variant.name)
    rows = data.eval_rows(cfg)
    judges = stage_judges(cfg, "eval")
    cache = generation_cache(cfg)
    eval_seed = derive_seed(cfg.seed, "07_evaluate", 0)
    model, tok = _load_final(ctx, cfg, variant, model_dir)
    records = heldout.evaluate_model(model, tok, rows, cfg, judges, eval_seed, cache=cache is not None)
    records = [{**r, "model": variant.name} for r in records]
    artifacts.write_jsonl(folder / "records.jsonl", records)
    metrics = model_summary(records, cfg.judge.unsafe_below, cfg.eval.n_bootstrap, eval_seed)
    metrics["reference_perplexity"] = heldout.benign_reference_perplexity(model, tok, rows)
    cap = None
    if capability_wanted(ctx.cfg, variant):
        cap = capability.evaluate_capability(model, tok, cfg.capability, cfg.cache_dir)
    del model
    release_memory()
    per_set = heldout.by_set({variant.name: records}, cfg, eval_seed).drop(columns="model")
    sources: dict[str, int] = {}
    for r in rounds:
        for k, n in r["sources"].items():
            sources[k] = sources.get(k, 0) + n
    return {
        "key": variant_key(ctx.cfg, ctx.stage, ctx.upstream, variant),
        "name": variant.name,
        "group": variant.group,
        "data": variant.data,
        "overrides": variant.overrides,
        "seed": cfg.seed,
        "w_safety": cfg.train.w_safety,
        "w_helpful": cfg.train.w_helpful,
        "label_noise": cfg.judge.label_noise,
        "pairs_order": cfg.pairs.order,
        "n_rounds": len(rounds),
        "pairs_per_round": {"curated_schedule": variant.n_pairs, "loop": cfg.pairs.max_pairs}.get(variant.data),
        "n_pairs": sum(r["n_pairs"] for r in rounds),
        "rounds": rounds,
        "sources": dict(sorted(sources.items())),
        "train": {"seconds": round(sum(r["train"].get("seconds", 0.0) for r in rounds), 1)},
        "metrics": metrics,
        "per_set": per_set.to_dict("records"),
        "records": f"{variant.name}/records.jsonl",
        "capability": cap,
    }
