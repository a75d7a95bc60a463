"""Child processes in their own process groups, so a timeout or Ctrl-C stops a step's whole tree."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from orchestr.orphans import Ledger

TERM_GRACE_SECONDS = 2.0
TAIL_LINES = 40
PIPE_DRAIN_SECONDS = 1.0
TAIL_CHARS = 8000


def kill_group(pgid: int, *, grace: float = TERM_GRACE_SECONDS, reap: Callable[[], object] | None = None) -> None:
    """SIGTERM the group, then SIGKILL whatever is left after `grace` seconds.

    `reap` polls our own child (the group leader), which would otherwise linger as a zombie
    member of the group and keep it looking alive.
    """
    try:
        os.killpg(pgid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = grace
    step = 0.02
    while deadline > 0:
        if reap is not None:
            reap()
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        threading.Event().wait(step)
        deadline -= step
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return


class ProcessRegistry:
    """The process groups a run has started; stopped all at once on cancel. With a ledger, they are
    also on disk, watched, so a runner killed by `kill -9` does not leave them running."""

    def __init__(self, ledger: Ledger | None = None) -> None:
        self._groups: set[int] = set()
        self._lock = threading.Lock()
        self._ledger = ledger
        self.cancelled = False

    def add(self, pgid: int) -> None:
        with self._lock:
            self._groups.add(pgid)
            cancelled = self.cancelled
        if self._ledger is not None:
            self._ledger.add(pgid)
        if cancelled:
            kill_group(pgid, grace=0.5)

    def discard(self, pgid: int) -> None:
        with self._lock:
            self._groups.discard(pgid)
        if self._ledger is not None:
            self._ledger.discard(pgid)

    def close(self) -> None:
        """The run ended cleanly: forget the ledger and let its watchdog go."""
        if self._ledger is not None:
            self._ledger.close()

    def stop_all(self) -> None:
        with self._lock:
            self.cancelled = True
            groups = list(self._groups)
        threads = [threading.Thread(target=kill_group, args=(g,)) for g in groups]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


class Tail:
    """The last lines of a stream, bounded in lines and characters."""

    def __init__(self) -> None:
        self._lines: deque[str] = deque(maxlen=TAIL_LINES)

    def add(self, line: str) -> None:
        self._lines.append(line[-TAIL_CHARS:])

    def text(self) -> str:
        return "\n".join(self._lines)[-TAIL_CHARS:]


@dataclass
class Finished:
    exit_code: int | None
    timed_out: bool
    stdout: str
    stderr: str


def _pump(stream: IO[bytes], tail: Tail, on_line: Callable[[str], None] | None, over: threading.Event) -> None:
    """Lines into the tail and `on_line`, until the stream closes; nothing is forwarded once `over`."""
    for raw in iter(stream.readline, b""):
        if over.is_set():
            continue
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        tail.add(line)
        if on_line is not None:
            on_line(line)
    stream.close()


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float | None,
    registry: ProcessRegistry | None = None,
    on_stdout: Callable[[str], None] | None = None,
    on_stderr: Callable[[str], None] | None = None,
) -> Finished:
    """Run argv (never through a shell string built from data) in its own process group."""
    proc = subprocess.Popen(
        list(argv), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    if registry is not None:
        registry.add(proc.pid)
    tails = (Tail(), Tail())
    assert proc.stdout is not None and proc.stderr is not None
    over = threading.Event()
    pumps = [threading.Thread(target=_pump, args=(proc.stdout, tails[0], on_stdout, over), daemon=True),
             threading.Thread(target=_pump, args=(proc.stderr, tails[1], on_stderr, over), daemon=True)]
    for pump in pumps:
        pump.start()
    timed_out = False
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        # Stop what the step left behind (background jobs), so nothing outlives it.
        kill_group(proc.pid, grace=0.5 if not timed_out else TERM_GRACE_SECONDS, reap=proc.poll)
        proc.wait()
        if registry is not None:
            registry.discard(proc.pid)
    # The pipes close when the group is gone; a grandchild that escaped it (setsid) may hold them
    # open for as long as it lives: its lines are not waited for.
    drained_by = time.monotonic() + PIPE_DRAIN_SECONDS
    for pump in pumps:
        pump.join(timeout=max(0.0, drained_by - time.monotonic()))
    over.set()
    return Finished(None if timed_out else proc.returncode, timed_out, tails[0].text(), tails[1].text())
