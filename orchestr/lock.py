"""One run of a workflow at a time: an flock on `.orchestr/locks/<workflow>.lock`.

The kernel releases an flock when its process dies, so a lock left by a crashed run is reclaimed
by the next run without any cleanup. The file names the holder (run id, pid) for the busy message.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path
from types import TracebackType

from orchestr.errors import Busy, StateError


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class WorkflowLock:
    def __init__(self, state_dir: Path, workflow: str) -> None:
        self.path = state_dir / "locks" / f"{_safe(workflow)}.lock"
        self.workflow = workflow
        self._fd: int | None = None

    def acquire(self, run_id: str, *, wait: bool = False) -> None:
        """Take the lock, or raise Busy naming the holder; `wait` blocks until it is free instead."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StateError(f"cannot create lock file {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(fd)
            os.close(fd)
            raise Busy(f"workflow '{self.workflow}' is busy: run {holder.get('run', '?')} "
                       f"(pid {holder.get('pid', '?')}) holds its lock {self.path}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"run": run_id, "pid": os.getpid()}).encode(), 0)
        self._fd = fd

    @staticmethod
    def _holder(fd: int) -> dict[str, object]:
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
        """Who holds the lock now, or None when it is free (probed without taking it)."""
        if not self.path.exists():
            return None
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return self._holder(fd)
        finally:
            os.close(fd)
        return None

    def __enter__(self) -> WorkflowLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
