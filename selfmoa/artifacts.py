"""Run and stage artifacts: atomic writes, stage folders, manifests, and resume.

A stage is *complete* only when its `manifest.json` exists and records the same stage key: a hash of
the config sections the stage reads plus the keys of the upstream stages it consumed (the DAG and the
keys are `selfmoa.stages`). The manifest is written last (after outputs and `metrics.json`),
atomically, so an interrupted stage is never mistaken for a finished one, and a rerun recomputes only
what changed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from selfmoa import config as C
from selfmoa.manifest import environment, peak_rss_gib
from selfmoa.paths import run_dir, stage_dir
from selfmoa.seeding import derive_seed, seed_everything
from selfmoa.stages import StageError, dependencies, stage_key, stage_sections

log = logging.getLogger(__name__)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write a file through a temporary file and a rename, so readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    """Atomic, pretty JSON."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


def read_json(path: str | Path) -> Any:
    """Read JSON."""
    return json.loads(Path(path).read_text())


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Atomic JSON lines."""
    text = "".join(json.dumps(r, sort_keys=True, default=str) + "\n" for r in rows)
    return atomic_write_bytes(path, text.encode())


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read JSON lines."""
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def file_hash(path: str | Path) -> str:
    """sha256 of a file, or of every file below a folder (names and contents)."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        h.update(str(p.relative_to(path) if path.is_dir() else p.name).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def snapshot_config(run: Path, cfg: C.RunConfig) -> Path:
    """Write the resolved config into the run folder before anything loads (config.yaml)."""
    target = run / "config.yaml"
    text = yaml.safe_dump(C.to_dict(cfg), sort_keys=False)
    if not target.exists() or target.read_text() != text:
        atomic_write_bytes(target, text.encode())
    return target


def read_manifest(run: Path, stage: str, iteration: int | None = None) -> dict[str, Any] | None:
    """The manifest of a stage, or None when it has not completed."""
    path = stage_dir(run, stage, iteration) / "manifest.json"
    return read_json(path) if path.is_file() else None


@dataclass
class StageContext:
    """An open stage of a run: folders, config, seed, and the bookkeeping that makes it resumable.

    Create with `open_stage`. `complete` says whether outputs from an identical earlier run can be
    loaded instead of recomputed. Call `finish(metrics)` at the end: it writes `metrics.json`, then
    `manifest.json` (last).
    """

    cfg: C.RunConfig
    run: Path
    stage: str
    iteration: int | None
    dir: Path
    key: str
    seed: int
    upstream: dict[str, str]
    complete: bool
    started: float = field(default_factory=time.time)
    models: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def path(self, name: str) -> Path:
        """Path of an output file of this stage."""
        return self.dir / name

    def upstream_dir(self, stage: str, iteration: int | None = None) -> Path:
        """Folder of a completed upstream stage (clear error when it has not run)."""
        if read_manifest(self.run, stage, iteration) is None:
            where = f"{stage}" + (f" (iteration {iteration})" if iteration is not None else "")
            raise StageError(
                f"stage {where} has not completed in run {self.run.name}: run it first "
                f"(`selfmoa run --config <profile> --run-id {self.run.name}`)"
            )
        return stage_dir(self.run, stage, iteration)

    def timed(self, label: str, seconds: float) -> None:
        """Record the wall time of a step."""
        self.timings[label] = round(seconds, 3)

    def finish(self, metrics: dict[str, Any], outputs: list[str] | None = None) -> dict[str, Any]:
        """Write metrics.json and then the manifest; returns the manifest."""
        write_json(self.path("metrics.json"), metrics)
        names = (
            outputs
            if outputs is not None
            else sorted(
                p.name for p in self.dir.iterdir() if p.name not in ("manifest.json",) and not p.name.startswith(".")
            )
        )
        manifest = {
            "stage": self.stage,
            "iteration": self.iteration,
            "run_id": self.run.name,
            "stage_key": self.key,
            "config_hash": C.config_hash(stage_sections(self.cfg, self.stage)),
            "full_config_hash": C.config_hash(self.cfg),
            "upstream": self.upstream,
            "outputs": {n: file_hash(self.path(n)) for n in names if self.path(n).exists()},
            "seed": self.seed,
            "models": self.models,
            "timings": {**self.timings, "total_s": round(time.time() - self.started, 3)},
            "peak_rss_gib": peak_rss_gib(),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **environment(),
        }
        write_json(self.path("manifest.json"), manifest)
        self.complete = True
        log.info("stage %s complete in %.1fs", self.stage, manifest["timings"]["total_s"])
        return manifest


def upstream_keys(run: Path, deps: list[tuple[str, int | None]]) -> dict[str, str]:
    """Stage keys of upstream stages ('missing' where one has not completed)."""
    out = {}
    for stage, it in deps:
        m = read_manifest(run, stage, it)
        out[f"{stage}@{it}"] = m["stage_key"] if m else "missing"
    return out


def open_stage(
    config_path: str | Path,
    run_id: str,
    stage: str,
    iteration: int | None = None,
    depends_on: list[tuple[str, int | None]] | None = None,
    force: bool = False,
    overrides: dict[str, Any] | list[str] | None = None,
    upstream: dict[str, str] | None = None,
) -> StageContext:
    """Load the config, create the stage folder, seed everything, and report whether it is complete.

    Args:
        config_path: a YAML profile, e.g. configs/smoke.yaml.
        run_id: folder name under the config's runs_dir.
        stage: notebook stem, e.g. "03_sample".
        iteration: loop iteration for stages 02-06; None for once-per-run stages.
        depends_on: upstream (stage, iteration) pairs whose outputs this stage reads.
        force: recompute even when an identical earlier result exists.
        upstream: upstream stage keys computed by the caller (stages read from other run folders, e.g. the
            seed runs of a study's 08_report: `selfmoa.pipeline.report_upstream`); replaces `depends_on`.
    """
    from selfmoa.paths import resolve_path

    cfg = C.load(resolve_path(config_path), overrides)
    run = run_dir(cfg.runs_dir, run_id)
    run.mkdir(parents=True, exist_ok=True)
    snapshot_config(run, cfg)
    deps = depends_on if depends_on is not None else dependencies(stage, iteration, cfg.iterations)
    upstream = upstream if upstream is not None else upstream_keys(run, deps)
    key = stage_key(cfg, stage, iteration, upstream)
    folder = stage_dir(run, stage, iteration)
    old = read_manifest(run, stage, iteration)
    complete = bool(old) and old.get("stage_key") == key and not force
    if old and not complete:
        (folder / "manifest.json").unlink()  # outputs will be rewritten; never leave a stale manifest
    folder.mkdir(parents=True, exist_ok=True)
    seed = derive_seed(cfg.seed, stage, iteration or 0)
    seed_everything(seed)
    ctx = StageContext(
        cfg=cfg,
        run=run,
        stage=stage,
        iteration=iteration,
        dir=folder,
        key=key,
        seed=seed,
        upstream=upstream,
        complete=complete,
    )
    if complete:
        log.info("stage %s (iteration %s) already complete: loading saved outputs", stage, iteration)
    return ctx


def is_complete(
    cfg: C.RunConfig, run: Path, stage: str, iteration: int | None, upstream: dict[str, str] | None = None
) -> bool:
    """True when a stage's manifest matches what a run with `cfg` would compute now (`upstream`: as in
    `open_stage`)."""
    old = read_manifest(run, stage, iteration)
    if not old:
        return False
    if upstream is None:
        upstream = upstream_keys(run, dependencies(stage, iteration, cfg.iterations))
    return old.get("stage_key") == stage_key(cfg, stage, iteration, upstream)
