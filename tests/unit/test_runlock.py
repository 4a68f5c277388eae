"""One writer per run folder: a second writer fails at once naming the first; a killed holder's lock is recovered."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from selfmoa import runlock
from selfmoa.paths import ROOT

HOLDER = """
import sys, time
from selfmoa import runlock
with runlock.hold(sys.argv[1], ["selfmoa", "run", "--run-id", "held"]):
    print("locked", flush=True)
    time.sleep(60)
"""


def _start_holder(run: Path) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


def test_second_writer_fails_naming_the_first_until_it_is_killed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = _start_holder(run)
    try:
        t0 = time.monotonic()
        with pytest.raises(runlock.RunLockedError) as err, runlock.hold(run):
            pass
        assert time.monotonic() - t0 < 1.0  # fails at once, does not wait
        msg = str(err.value)
        assert f"pid {proc.pid} on host {socket.gethostname()}" in msg
        assert "command: selfmoa run --run-id held" in msg and "started 20" in msg
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert runlock.read_holder(run)["pid"] == proc.pid  # the killed holder's record is left behind ...
    with runlock.hold(run) as me:  # ... and the lock is recovered anyway
        assert me["pid"] == os.getpid() and runlock.read_holder(run)["pid"] == os.getpid()
    assert runlock.read_holder(run) is None  # emptied on release


def test_lock_is_reentrant_across_sequential_runs_and_names_dead_pids(tmp_path: Path) -> None:
    for _ in range(2):
        with runlock.hold(tmp_path / "run"):
            pass
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    record = {"pid": int(dead.stdout), "host": socket.gethostname(), "started": "x", "command": "y"}
    assert "has exited" in runlock.describe_holder(record)
    assert runlock.describe_holder(None) == "another process (no holder record)"


def test_cli_run_refuses_a_folder_in_use(tmp_path: Path) -> None:
    run = tmp_path / "smoke-seed0"
    proc = _start_holder(run)
    try:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "selfmoa.cli",
                "run",
                "--config",
                "configs/smoke.yaml",
                "--set",
                f"runs_dir={tmp_path}",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert out.returncode == 2
    errors = [line for line in out.stderr.splitlines() if line.startswith("selfmoa: error:")]
    assert len(errors) == 1 and f"is in use by pid {proc.pid}" in errors[0], out.stderr
    assert not (run / "executed").exists()  # nothing started


def test_recover_clears_kernels_and_temp_files_of_a_dead_holder(tmp_path: Path) -> None:
    run = tmp_path / "run"
    stage = run / "iter0" / "06_align"
    stage.mkdir(parents=True)
    (stage / ".metrics.json.ab_cd123").write_text("{")  # atomic_write_bytes cut short
    (run / ".config.yaml.x1y2z3w4").mkdir()
    keep = [stage / "metrics.json", run / ".lock", stage / ".hidden"]
    for path in keep:
        path.write_text("x")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    env = {**os.environ, "JPY_PARENT_PID": str(pid)}
    kernel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    try:
        time.sleep(0.2)
        assert runlock.orphan_kernels(pid) == [kernel.pid]
        record = {"pid": pid, "host": socket.gethostname(), "started": "x", "command": "selfmoa run"}
        done = runlock.recover(run, record, wait_s=0.3)
        assert kernel.wait(timeout=5) == -signal.SIGKILL
    finally:
        if kernel.poll() is None:
            kernel.kill()
    assert len(done) == 3 and runlock.temp_files(run) == []
    assert all(p.exists() for p in keep)
    assert runlock.recover(run, {**record, "pid": os.getpid()}) == []  # a live holder is left alone
    assert runlock.recover(run, None) == []
