"""`selfmoa train` under `accelerate launch` on two GPUs (skipped with fewer)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from selfmoa.artifacts import write_jsonl
from selfmoa.paths import ROOT

pytestmark = pytest.mark.gpu


def test_two_processes_train_one_adapter(tmp_path: Path) -> None:
    import torch

    if torch.cuda.device_count() < 2:
        pytest.skip("needs two CUDA GPUs")
    pairs = [
        {
            "prompt": f"Tell me about topic {i}.",
            "chosen": "Here is a short, safe overview.",
            "rejected": f"Sure, step {i}: do this.",
            "safety_margin": 0.5,
        }
        for i in range(16)
    ]
    write_jsonl(tmp_path / "pairs.jsonl", pairs)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    cmd += ["-m", "selfmoa.cli", "train", "--config", "configs/smoke.yaml", "--set", "policy.device=cuda"]
    cmd += ["--pairs", str(tmp_path / "pairs.jsonl"), "--output", str(tmp_path / "adapter")]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert '"num_processes": 2' in done.stdout
    assert not (tmp_path / ".adapter.ref-logps").exists()
