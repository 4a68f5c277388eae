"""One writer per run folder: an exclusive `flock` on `<run>/.lock`, naming its holder.

`selfmoa run` holds the lock for its whole duration. A second run on the same folder fails at once with
the holder's pid, host, start time and command (read from the lock file). The kernel drops a `flock`
when its process dies, so a lock left by a killed run (even `kill -9`) is recovered by the next run
without any clean-up; the stale holder record is simply overwritten. The lock file stays in place
(removing it could let two writers lock two different files); it is emptied on release.

`flock` locks are per host: two machines sharing a run folder over NFS are not kept apart.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

LOCK_NAME = ".lock"


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
