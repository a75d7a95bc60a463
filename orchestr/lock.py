"""One run of a workflow at a time: an flock on `.orchestr/locks/<workflow>.lock`.

The kernel releases an flock when its process dies, so a lock left by a crashed run is reclaimed
by the next run without any cleanup. The file names the holder (run id, pid, and the pid's start
time, so a reused pid is never mistaken for the holder) for the busy message and the backstop.

An flock belongs to an open file description, not to a process: `orchestr tick` takes a
workflow's lock while it decides, then hands the open descriptor to the drainer it starts, so no
instant passes in which the lock looks free (see orchestr/scheduling/drain.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from orchestr.errors import Busy, StateError

if TYPE_CHECKING:
    from orchestr.store.base import LockHandover

POLL_SECONDS = 0.1
LOCK_FD_VAR = "ORCHESTR_LOCK_FD"  # the inherited descriptor of a lock handed to a child process


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def process_start(pid: int) -> str | None:
    """The pid's start time in clock ticks since boot (Linux), or None when it is gone or unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":  # a zombie has finished: it holds nothing
        return None
    return fields[19]


class WorkflowLock:
    def __init__(self, state_dir: Path, workflow: str, *, suffix: str = "lock") -> None:
        self.path = state_dir / "locks" / f"{_safe(workflow)}.{suffix}"
        self.workflow = workflow
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    @property
    def where(self) -> str:
        return str(self.path)

    def fileno(self) -> int:
        assert self._fd is not None, "the lock is not held"
        return self._fd

    def _open(self) -> int:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateError(f"cannot create lock file {self.path}: {exc.strerror}") from None

    def try_acquire(self, run_id: str) -> bool:
        """Take the lock if it is free; False when another process holds it."""
        fd = self._open()
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        self.name_holder(run_id)
        return True

    def acquire(self, run_id: str, *, wait: bool = False, give_up: Callable[[], bool] | None = None) -> None:
        """Take the lock, or raise Busy naming the holder.

        `wait` polls until it is free instead; `give_up` is asked between polls and ends the wait
        (with Busy) when it returns True, so a queued wait can honour a deadline or a cancel.
        """
        while not self.try_acquire(run_id):
            if not wait or (give_up is not None and give_up()):
                raise Busy(self.busy_message())
            time.sleep(POLL_SECONDS)

    def busy_message(self) -> str:
        holder = self.holder() or {}
        return (f"workflow '{self.workflow}' is busy: run {holder.get('run', '?')} "
                f"(pid {holder.get('pid', '?')}) holds its lock {self.path}")

    def adopt(self, fd: int, run_id: str) -> None:
        """Take over a lock whose open descriptor was inherited from the process that took it."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours already: a no-op that proves it
        except OSError as exc:
            raise StateError(f"inherited lock descriptor {fd} for {self.path} is not usable: {exc}") from None
        self._fd = fd
        self.name_holder(run_id)

    def adopt_from(self, env: Mapping[str, str], run_id: str) -> bool:
        """Take over the lock a parent handed over (see `handover`); False when none was."""
        inherited = env.get(LOCK_FD_VAR)
        if not inherited:
            return False
        try:
            fd = int(inherited)
        except ValueError:
            raise StateError(f"{LOCK_FD_VAR}={inherited!r} is not a descriptor number") from None
        self.adopt(fd, run_id)
        return True

    def handover(self) -> LockHandover:
        """What a child needs to inherit this lock: the open descriptor itself."""
        from orchestr.store.base import LockHandover

        fd = self.fileno()
        return LockHandover(env={LOCK_FD_VAR: str(fd)}, fds=(fd,))

    def handed_to(self, pid: int) -> None:
        """The child shares the open file description, so the kernel keeps it held: nothing to do."""

    def name_holder(self, run_id: str) -> None:
        from orchestr.store.base import host_id

        assert self._fd is not None
        pid = os.getpid()
        os.ftruncate(self._fd, 0)
        holder = {"run": run_id, "pid": pid, "start": process_start(pid), "host": host_id()}
        os.pwrite(self._fd, json.dumps(holder).encode(), 0)

    @staticmethod
    def _read(fd: int) -> dict[str, object]:
        try:
            data = json.loads(os.pread(fd, 4096, 0) or b"{}")
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def holder(self) -> dict[str, object] | None:
        """Who holds the lock now, or None when it is free.

        The probe takes a shared lock for an instant, so it is used only where the lock is
        expected to be held (busy messages, the deadline backstop, the waiter check).
        """
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return self._read(fd)
        finally:
            os.close(fd)
        return None

    def __enter__(self) -> WorkflowLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
