"""Publishing a reference run: small result tables to `data/results/<profile>/`, figures to `figures/`.

Stages 07, 07b and 08 publish only when the config says `publish: true`; what they write is aggregate
(metrics with confidence intervals, judge validation, figures), never generated text. In a multi-seed study
(`selfmoa study`) the seed runs do not publish; the study's 08_report publishes the cross-seed files
(`summary.json`, `headline.md`, `tables.md`, `eval_by_set.csv` with a `seed` column, figures). The command
line turns `publish` off for any run that is not the profile's reference study (`pipeline.publish_guard`).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from selfmoa.artifacts import atomic_write_bytes, write_json
from selfmoa.paths import FIGURES, results_dir


def write_file(path: Path, content: Any) -> Path:
    """Write one result file by its suffix: `.json` (a JSON-able object), `.csv` (a DataFrame), else text.

    Text gets a final newline when it has none.
    """
    if path.suffix == ".json":
        return write_json(path, content)
    if path.suffix == ".csv":
        path.parent.mkdir(parents=True, exist_ok=True)
        content.to_csv(path, index=False)
        return path
    if not isinstance(content, str):
        raise TypeError(f"{path.name}: text files take a str, got {type(content).__name__}")
    return atomic_write_bytes(path, (content if content.endswith("\n") else content + "\n").encode())


# Machine- and time-dependent fields: they stay in the run folder's manifests and stage files, never in
# `data/results/`, so rerunning a finished study on the same machine leaves the committed results unchanged.
TIMING_KEYS = frozenset({"seconds", "train_s", "total_s", "responses_per_s", "timings", "wall_s", "elapsed"})


def is_timing_key(key: str) -> bool:
    """True for a field that records time or throughput (`seconds`, `train_seconds`, `seconds_per_pair_epoch`, ...)."""
    k = str(key)
    return k in TIMING_KEYS or k.endswith("_seconds") or k.startswith("seconds_") or k.endswith("_per_s")


def without_timing(content: Any) -> Any:
    """`content` with every timing field removed: dict keys (recursively, through lists) or DataFrame columns."""
    if isinstance(content, dict):
        return {k: without_timing(v) for k, v in content.items() if not is_timing_key(k)}
    if isinstance(content, list):
        return [without_timing(v) for v in content]
    if hasattr(content, "columns") and hasattr(content, "drop"):
        return content.drop(columns=[c for c in content.columns if is_timing_key(c)])
    return content


def publish(profile: str, files: dict[str, Any]) -> list[Path]:
    """Write `files` ({file name: content}) into `data/results/<profile>/`, timing fields removed; returns the paths."""
    out = results_dir(profile)
    return [write_file(out / name, without_timing(content)) for name, content in files.items()]


def publish_figures(folder: Path, target: Path = FIGURES) -> list[Path]:
    """Copy every figure file of a stage folder (png and json sidecars) into `figures/`."""
    target.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy(f, target / f.name)) for f in sorted(Path(folder).iterdir()) if f.is_file()]
