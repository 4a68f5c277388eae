"""Preference training outside the notebooks, on one GPU or several (`accelerate launch`).

`selfmoa train` runs `training.train_preference` in every process that `accelerate launch` starts (one per
GPU; gradients are averaged by DDP), either as stage 06_align of a run (the stage's adapter,
`train_log.jsonl`, `metrics.json` and manifest, so `selfmoa run` then skips that step) or on any
`pairs.jsonl` from the base policy. What several processes need, and this module adds:

- `train.batch_size` stays the global batch: each of N processes takes batch_size / N pairs per step;
- each process loads the policy on its own GPU; the main process goes first, so a merged checkpoint of the
  policy (4-bit policies, `selfmoa.policy`) is written once and read by the others;
- the one-off reference pass (`precompute_ref_log_probs`) gathers every pair's reference log-probabilities
  on every process and keeps them in memory (`selfmoa.preference_trainer`), so no process reads a file
  another one wrote;
- only the main process writes the adapter and the stage files.

Several processes need CUDA GPUs: on CPUs, log-probabilities come from the backbone called outside DDP's
forward (`selfmoa.cpu_kernels`), so gradients would not be synchronised. One process works anywhere.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selfmoa import config as C

log = logging.getLogger(__name__)

STAGE = "06_align"


@dataclass(frozen=True)
class TrainRequest:
    """What `selfmoa train` was asked: a run's stage 06 (pairs/output None) or a pairs file into an adapter folder."""

    config: str
    overrides: tuple[str, ...] = ()
    run_id: str | None = None
    iteration: int = 0
    pairs: str | None = None
    output: str | None = None
    force: bool = False

    @property
    def stage(self) -> bool:
        """True when training stage 06_align of a run."""
        return self.pairs is None


def train_request(
    config: str,
    overrides: list[str] | None = None,
    run_id: str | None = None,
    iteration: int | None = None,
    pairs: str | None = None,
    output: str | None = None,
    force: bool = False,
) -> TrainRequest:
    """Validate the arguments of `selfmoa train` (messages name the flag and the fix)."""
    if (pairs is None) != (output is None):
        raise ValueError("--pairs and --output go together: train a pairs.jsonl into an adapter folder")
    if pairs is not None and (run_id is not None or iteration is not None):
        raise ValueError("--run-id/--iteration select a run's stage 06_align; with --pairs the base policy is trained")
    iteration = 0 if iteration is None else iteration
    if iteration < 0:
        raise ValueError(f"--iteration {iteration}: must be >= 0")
    if pairs is not None and not Path(pairs).is_file():
        raise ValueError(f"--pairs {pairs}: file not found")
    return TrainRequest(config, tuple(overrides or ()), run_id, iteration, pairs, output, force)


def per_process_config(cfg: C.RunConfig, num_processes: int, device: str | None = None) -> C.RunConfig:
    """The config one of `num_processes` training processes uses: its share of the batch, its own GPU.

    The policy is loaded for training with the transformers backend (`policy.backend` only concerns generation).

    Args:
        cfg: the run config; `train.batch_size` is the global batch (pairs per optimiser step).
        num_processes: processes started by `accelerate launch` (1 without it).
        device: this process's device, e.g. 'cuda:1' (None keeps `policy.device`).
    """
    cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, backend="transformers"))
    if num_processes == 1:
        return cfg
    if cfg.policy.device == "cpu" or (device is not None and not device.startswith("cuda")):
        raise ValueError(
            f"{num_processes} training processes need one CUDA GPU each (policy.device is {cfg.policy.device!r}); "
            "on CPUs train in one process (without accelerate launch)"
        )
    batch = cfg.train.batch_size
    if batch % num_processes:
        raise ValueError(
            f"train.batch_size={batch} (the global batch) does not split over {num_processes} processes; "
            f"set train.batch_size to a multiple of {num_processes}"
        )
    policy = cfg.policy if device is None else dataclasses.replace(cfg.policy, device=device)
    train = dataclasses.replace(cfg.train, batch_size=batch // num_processes)
    return dataclasses.replace(cfg, policy=policy, train=train)


def stage_paths(run: Path, iteration: int) -> tuple[Path, Path]:
    """(pairs.jsonl of 05_pairs, adapter folder of 06_align) of one iteration of a run."""
    from selfmoa.paths import stage_dir
    from selfmoa.policy import ADAPTER_DIR

    return stage_dir(run, "05_pairs", iteration) / "pairs.jsonl", stage_dir(run, STAGE, iteration) / ADAPTER_DIR


def train(req: TrainRequest) -> dict[str, Any] | None:
    """Run a `TrainRequest` in this process (all processes of `accelerate launch` call it).

    Returns the metrics on the main process (None elsewhere, and when the stage is already complete).
    """
    from accelerate import PartialState

    from selfmoa.artifacts import is_complete, open_stage, read_jsonl, read_manifest, write_jsonl
    from selfmoa.models import load_model
    from selfmoa.paths import resolve_path, run_dir
    from selfmoa.pipeline import default_run_id
    from selfmoa.policy import adapter_chain, load_policy
    from selfmoa.seeding import derive_seed, seed_everything
    from selfmoa.stages import StageError
    from selfmoa.training import stage_metrics, train_preference

    state = PartialState()  # under accelerate launch: process group and this process's GPU
    cfg = C.load(resolve_path(req.config), list(req.overrides))
    run = run_dir(cfg.runs_dir, req.run_id or default_run_id(cfg))
    if req.stage:
        if read_manifest(run, "05_pairs", req.iteration) is None:
            raise StageError(f"stage 05_pairs (iteration {req.iteration}) has not completed in run {run.name}")
        if not req.force and is_complete(cfg, run, STAGE, req.iteration):
            log.info("%s@%d of run %s is complete; nothing to train (--force retrains)", STAGE, req.iteration, run.name)
            return None
        pairs, output = stage_paths(run, req.iteration)
        seed = derive_seed(cfg.seed, STAGE, req.iteration)
    else:
        pairs, output, seed = Path(str(req.pairs)), Path(str(req.output)), cfg.seed
    state.wait_for_everyone()
    ctx = None
    if req.stage and state.is_main_process:
        ctx = open_stage(req.config, run.name, STAGE, req.iteration, force=True, overrides=list(req.overrides))
    seed_everything(seed)
    n = state.num_processes
    local = per_process_config(cfg, n, str(state.device) if n > 1 else None)
    built = read_jsonl(pairs)
    with state.main_process_first():
        model, tok = load_policy(local, run, req.iteration) if req.stage else load_model(local.policy, local.cache_dir)
    with tempfile.TemporaryDirectory(prefix="selfmoa-train-") as scratch:
        target = output if state.is_main_process else Path(scratch) / "adapter"
        result = train_preference(model, tok, built, local.train, target, seed=seed)
    state.wait_for_everyone()
    if not state.is_main_process:
        return None
    metrics = stage_metrics(result) | {"num_processes": n}
    if ctx is not None:
        write_jsonl(ctx.path("train_log.jsonl"), result["metrics"])
        ctx.models = {"adapter": str(output), "base_adapters": [str(p) for p in adapter_chain(run, req.iteration)]}
        ctx.timed("train", result["seconds"])
        ctx.finish(metrics)
    log.info("adapter saved to %s", output)
    return metrics
