"""Where things live: repository root, run folders, stage folders, committed results."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CONFIGS = ROOT / "configs"
FIGURES = ROOT / "figures"


def resolve_path(path: str | Path) -> Path:
    """Relative paths are taken from the repository root, so notebooks and the CLI agree."""
    p = Path(path)
    return p if p.is_absolute() else ROOT / p


def run_dir(runs_dir: str | Path, run_id: str) -> Path:
    """Folder of one run: data/runs/<run_id>/."""
    if not run_id or "/" in run_id or run_id.startswith("."):
        raise ValueError(f"run_id {run_id!r}: use a plain folder name such as 'cpu-seed0'")
    return resolve_path(runs_dir) / run_id


def stage_dir(run: Path, stage: str, iteration: int | None = None) -> Path:
    """Folder of one stage: <run>/<stage>/ or <run>/iter<t>/<stage>/ for loop stages."""
    return run / stage if iteration is None else run / f"iter{iteration}" / stage


def results_dir(profile: str) -> Path:
    """Committed aggregate results of a profile: data/results/<profile>/."""
    return ROOT / "data" / "results" / profile
