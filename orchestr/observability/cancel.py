"""`orchestr cancel RUN`: SIGTERM to the run's own process, after proving it is that process.

A run row names a pid and host; a pid can be reused. The workflow's lock file names its holder
(run id, pid, and the pid's start time, see orchestr/lock.py): only a live process whose start
time matches the holder's, holding the lock for this run, is signalled. SIGTERM makes the run
stop in order (its steps' process groups are stopped), record `cancelled`, settle its slot and
exit 130.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable

from orchestr.errors import StateError, UsageError
from orchestr.lock import process_start
from orchestr.store import RunRow, Store

POLL_SECONDS = 0.2


def verified_pid(store: Store, row: RunRow) -> int:
    """The pid to signal, or a UsageError/StateError saying why the run cannot be cancelled from here."""
    if row.status != "running":
        raise UsageError(f"run {row.id} is not running: it {row.status} (see `orchestr runs show {row.id}`)")
    if row.host != socket.gethostname():
        raise UsageError(f"run {row.id} runs on host {row.host} (pid {row.pid}); cancel it there")
    if row.effective_status != "running" or row.pid is None:
        raise UsageError(f"run {row.id} is not running: its process is gone (crashed); "
                         f"resume it with `orchestr run {row.workflow} --resume {row.id}`")
    holder = store.lock(row.workflow).holder() or {}
    start = process_start(row.pid)
    if holder.get("run") != row.id or holder.get("pid") != row.pid or start is None or holder.get("start") != start:
        raise StateError(f"pid {row.pid} is not proven to be run {row.id}'s process (the lock of workflow "
                         f"'{row.workflow}' names {holder or 'no holder'}); nothing was signalled")
    return row.pid


def cancel_run(store: Store, row: RunRow, *, wait: float, clock: Callable[[], float] = time.monotonic) -> RunRow:
    """Signal the run and wait up to `wait` seconds for its record to settle; the latest row."""
    pid = verified_pid(store, row)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        raise UsageError(f"run {row.id} ended before it could be cancelled") from None
    give_up = clock() + wait
    latest = row
    while clock() < give_up:
        found = store.run(row.id)
        if found is not None:
            latest = found
            if latest.status != "running" or latest.effective_status != "running":
                return latest
        time.sleep(POLL_SECONDS)
    return latest
