"""`selfmoa train` (stage 06 outside the notebooks, `accelerate launch`): arguments and plumbing, on the CPU."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from selfmoa import artifacts, cli, launch
from selfmoa import config as C
from selfmoa.paths import ROOT
from selfmoa.seeding import derive_seed

SMOKE = str(ROOT / "configs" / "smoke.yaml")


def test_parser_and_request() -> None:
    args = cli.build_parser().parse_args(
        ["train", "--config", SMOKE, "--iteration", "1", "--set", "train.beta=0.2", "--run-id", "r"]
    )
    req = launch.train_request(args.config, args.overrides, args.run_id, args.iteration, args.pairs, args.output)
    assert req == launch.TrainRequest(SMOKE, ("train.beta=0.2",), "r", 1) and req.stage
    assert launch.train_request(SMOKE).iteration == 0


def test_request_errors(tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("{}\n")
    with pytest.raises(ValueError, match="--pairs and --output go together"):
        launch.train_request(SMOKE, pairs=str(pairs))
    with pytest.raises(ValueError, match="with --pairs the base policy is trained"):
        launch.train_request(SMOKE, pairs=str(pairs), output="out", iteration=1)
    with pytest.raises(ValueError, match="must be >= 0"):
        launch.train_request(SMOKE, iteration=-1)
    with pytest.raises(ValueError, match="file not found"):
        launch.train_request(SMOKE, pairs=str(tmp_path / "missing.jsonl"), output="out")
    assert not launch.train_request(SMOKE, pairs=str(pairs), output="out").stage


def test_cli_reports_bad_arguments_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["train", "--config", SMOKE, "--pairs", "p.jsonl"]) == 2
    assert "--pairs and --output go together" in capsys.readouterr().err


def test_per_process_config_splits_the_global_batch() -> None:
    cfg = C.load(SMOKE, ["policy.device=cuda", "policy.backend=vllm", "train.batch_size=8"])
    one = launch.per_process_config(cfg, 1)
    assert one.train == cfg.train and one.policy.device == "cuda" and one.policy.backend == "transformers"
    two = launch.per_process_config(cfg, 2, "cuda:1")
    assert two.train.batch_size == 4 and two.policy.device == "cuda:1" and two.train.beta == cfg.train.beta
    with pytest.raises(ValueError, match="multiple of 3"):
        launch.per_process_config(cfg, 3, "cuda:0")
    with pytest.raises(ValueError, match="need one CUDA GPU each"):
        launch.per_process_config(C.load(SMOKE), 2, "cpu")


def test_stage_paths() -> None:
    pairs, adapter = launch.stage_paths(Path("/runs/r"), 2)
    assert pairs == Path("/runs/r/iter2/05_pairs/pairs.jsonl") and adapter == Path("/runs/r/iter2/06_align/adapter")


def test_shared_dataset_cache_gives_every_process_one_path(tmp_path: Path) -> None:
    from datasets import Dataset, load_from_disk

    ds = Dataset.from_list([{"a": 1}, {"a": 2}])
    assert not ds.cache_files
    # without it, each call (and so each process) draws its own random file for TRL's reference log-probs
    assert ds._get_cache_file_path("fp") != ds._get_cache_file_path("fp")
    ds.save_to_disk(tmp_path / "disk")
    on_disk = load_from_disk(str(tmp_path / "disk"))
    own = on_disk._get_cache_file_path("fp")
    original = Dataset._get_cache_file_path
    with launch.shared_dataset_cache(tmp_path / "shared") as folder:
        assert ds._get_cache_file_path("fp") == str(folder / "cache-fp.arrow")
        assert on_disk._get_cache_file_path("fp") == own
        # the main process writes, every process reads the same file back (TRL's `_precompute_ref_logps`)
        path = ds._get_cache_file_path("abc")
        ds.map(lambda b: {"r": [x * 2 for x in b["a"]]}, batched=True, remove_columns=["a"], cache_file_name=path)
        assert Dataset.from_file(ds._get_cache_file_path("abc"))["r"] == [2, 4]
    assert Dataset._get_cache_file_path is original


def _fake_training(monkeypatch: pytest.MonkeyPatch, calls: list[dict[str, Any]]) -> None:
    from selfmoa import models, policy, training

    def fake_train(model: Any, tok: Any, pairs: list, cfg: Any, output_dir: Any, seed: int = 0) -> dict[str, Any]:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "adapter_config.json").write_text("{}")
        calls.append({"model": model, "pairs": pairs, "cfg": cfg, "output": Path(output_dir), "seed": seed})
        log = [{"loss": 0.7, "step": 1}, {"loss": 0.5, "step": 2}]
        return {
            "model": model,
            "adapter_dir": str(output_dir),
            "adapter_digest": "d",
            "metrics": log,
            "n_pairs": len(pairs),
            "steps": 2,
            "seconds": 1.0,
            "seconds_reference": 0.1,
            "seconds_per_pair_epoch": 0.5,
        }

    monkeypatch.setattr(training, "train_preference", fake_train)
    monkeypatch.setattr(policy, "load_policy", lambda cfg, run, t: (f"policy@{t}:{cfg.train.batch_size}", "tok"))
    monkeypatch.setattr(models, "load_model", lambda spec, cache_dir: (f"base:{spec.name}", "tok"))


def test_stage_mode_records_06_align_so_the_pipeline_skips_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = [f"runs_dir={tmp_path}"]
    cfg = C.load(SMOKE, overrides)
    run = tmp_path / "smoke-seed0"
    req = launch.TrainRequest(SMOKE, tuple(overrides), iteration=0)
    with pytest.raises(artifacts.StageError, match="05_pairs"):
        launch.train(req)
    artifacts.write_json(run / "01_safety_reset" / "manifest.json", {"stage_key": "k1"})
    artifacts.write_json(run / "iter0" / "05_pairs" / "manifest.json", {"stage_key": "k5"})
    artifacts.write_jsonl(run / "iter0" / "05_pairs" / "pairs.jsonl", [{"prompt": "p"}] * 3)
    calls: list[dict[str, Any]] = []
    _fake_training(monkeypatch, calls)
    metrics = launch.train(req)
    assert calls[0]["output"] == run / "iter0" / "06_align" / "adapter" and len(calls[0]["pairs"]) == 3
    assert calls[0]["seed"] == derive_seed(cfg.seed, "06_align", 0) and calls[0]["model"] == "policy@0:4"
    assert metrics is not None and metrics["num_processes"] == 1 and metrics["last_loss"] == 0.5
    stage = run / "iter0" / "06_align"
    assert json.loads((stage / "metrics.json").read_text()) == metrics
    assert len(artifacts.read_jsonl(stage / "train_log.jsonl")) == 2
    assert artifacts.is_complete(cfg, run, "06_align", 0)  # `selfmoa run` now skips this step
    assert launch.train(req) is None and len(calls) == 1  # complete: nothing retrained
    launch.train(launch.TrainRequest(SMOKE, tuple(overrides), iteration=0, force=True))
    assert len(calls) == 2


def test_pairs_mode_trains_the_base_policy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = tmp_path / "pairs.jsonl"
    artifacts.write_jsonl(pairs, [{"prompt": "p"}] * 2)
    calls: list[dict[str, Any]] = []
    _fake_training(monkeypatch, calls)
    req = launch.train_request(SMOKE, [f"runs_dir={tmp_path}"], pairs=str(pairs), output=str(tmp_path / "out"))
    metrics = launch.train(req)
    assert calls[0]["model"].startswith("base:") and calls[0]["output"] == tmp_path / "out"
    assert metrics is not None and metrics["n_pairs"] == 2 and not (tmp_path / "smoke-seed0").exists()
