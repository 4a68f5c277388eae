"""One writer per run folder: an exclusive `flock` on `<run>/.lock`, naming its holder.

`selfmoa run` holds the lock for its whole duration. A second run on the same folder fails at once with
the holder's pid, host, start time and command (read from the lock file). The kernel drops a `flock`
when its process dies, so a lock left by a killed run (even `kill -9`) is recovered by the next run
without any clean-up; the stale holder record is simply overwritten. The lock file stays in place
(removing it could let two writers lock two different files); it is emptied on release.

A run killed with `kill -9` can leave two things behind, and the next holder clears both before it
writes (`recover`): Jupyter kernels the dead run started (they live in their own session, so a kill of the
run's process group misses them; ipykernel ends them about a second after their parent dies, and they may
write until then), and temporary files of writes they cut short (`.<name>.<random>`, see
`artifacts.atomic_write_bytes`).

`flock` locks are per host: two machines sharing a run folder over NFS are not kept apart.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import signal
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOCK_NAME = ".lock"
# mkstemp names of `artifacts.atomic_write_bytes` (prefix ".<name>.") and `tempfile.mkdtemp` folders
TEMP_NAME = re.compile(r"\..+\.[A-Za-z0-9_]{8}")
ORPHAN_WAIT_S = 10.0

log = logging.getLogger(__name__)


class RunLockedError(RuntimeError):
    """The run folder is in use by another process; the message names it."""


def holder_record(command: list[str] | None = None) -> dict[str, Any]:
    """Who holds the lock: pid, host, start time and command line of this process."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(command if command is not None else sys.argv),
    }


def read_holder(run: str | Path) -> dict[str, Any] | None:
    """The holder record in a run's lock file (None when absent, empty or unreadable)."""
    try:
        return json.loads((Path(run) / LOCK_NAME).read_text())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_holder(record: dict[str, Any] | None) -> str:
    """One line naming the process in a holder record."""
    if not record:
        return "another process (no holder record)"
    gone = ""
    if (
        record.get("host") == socket.gethostname()
        and isinstance(record.get("pid"), int)
        and not pid_alive(record["pid"])
    ):
        gone = " (that pid has exited; a process it started still holds the lock)"
    return (
        f"pid {record.get('pid')} on host {record.get('host')}{gone}, started {record.get('started')}, "
        f"command: {record.get('command')}"
    )


def orphan_kernels(parent_pid: int) -> list[int]:
    """Pids of live Jupyter kernels started by `parent_pid` (their JPY_PARENT_PID); Linux /proc only."""
    needle = f"JPY_PARENT_PID={parent_pid}".encode()
    out = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if needle in env and int(proc.name) != os.getpid():
            out.append(int(proc.name))
    return out


def temp_files(run: str | Path) -> list[Path]:
    """Temporary files and folders of interrupted atomic writes below a run folder."""
    return sorted(p for p in Path(run).rglob(".*") if p.name != LOCK_NAME and TEMP_NAME.fullmatch(p.name))


def recover(run: str | Path, previous: dict[str, Any] | None, wait_s: float = ORPHAN_WAIT_S) -> list[str]:
    """Clear what a killed holder left in `run`: wait for (then kill) its kernels, delete its temp files.

    Args:
        run: the run folder, whose lock the caller holds.
        previous: the holder record found in the lock file (None or a live holder: nothing to do).
        wait_s: how long orphaned kernels get to exit on their own before they are killed.

    Returns:
        What was done, one line each (also logged).
    """
    import shutil

    done: list[str] = []
    pid = (previous or {}).get("pid")
    if not isinstance(pid, int) or previous.get("host") != socket.gethostname() or pid_alive(pid):
        return done
    deadline = time.monotonic() + wait_s
    while (kernels := orphan_kernels(pid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for k in kernels:
        try:
            os.kill(k, signal.SIGKILL)
            done.append(f"killed kernel {k} left by dead pid {pid}")
        except ProcessLookupError:
            pass
    for path in temp_files(run):
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        done.append(f"removed {path} (a write cut short)")
    for line in done:
        log.warning("run folder %s: %s", run, line)
    return done


@contextmanager
def hold(run: str | Path, command: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Hold the run folder's lock for the `with` block; yields this process's holder record.

    Args:
        run: the run folder (created if missing).
        command: command line recorded for others to see (default: `sys.argv`).

    Raises:
        RunLockedError: another live process holds the lock; the message names its pid, host, start
            time and command, and how to proceed.
    """
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    path = run / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockedError(
                f"run folder {run} is in use by {describe_holder(read_holder(run))}; wait for it to finish, "
                f"stop it, or use another --run-id"
            ) from None
        recover(run, read_holder(run))
        record = holder_record(command)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        try:
            yield record
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
