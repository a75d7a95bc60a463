"""The state-store seam: what the engine, tick, drainer and status need from durable state.

Two backends implement `Store`: SQLite under `state_dir` (the default, one machine) and
PostgreSQL (many machines, one ledger). Both share the SQL in orchestr/store/sql.py; a lock
(`Store.lock`) is part of the seam because what "one run of a workflow at a time" means depends
on where the state lives: an flock on one machine, a lease row with a heartbeat across machines.
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

from orchestr.events import Event, parse_iso, utc_now

SCHEMA_VERSION = 2
HOST_VAR = "ORCHESTR_HOST_ID"  # a machine's name in run records and leases (default: the hostname)
STALE_VAR = "ORCHESTR_HEARTBEAT_STALE"  # seconds without a heartbeat after which a run is `crashed`
HEARTBEAT_STALE_SECONDS = 60.0


def host_id() -> str:
    """This machine's name in the shared records: ORCHESTR_HOST_ID, else the hostname."""
    return os.environ.get(HOST_VAR) or socket.gethostname()


def stale_seconds() -> float:
    """How long a heartbeat may be silent before its run (or lease) counts as dead."""
    raw = os.environ.get(STALE_VAR)
    try:
        value = float(raw) if raw else HEARTBEAT_STALE_SECONDS
    except ValueError:
        return HEARTBEAT_STALE_SECONDS
    return value if value > 0 else HEARTBEAT_STALE_SECONDS


def heartbeat_interval() -> float:
    """How often a live run (or lease holder) beats: well inside the staleness window."""
    return min(10.0, stale_seconds() / 4)


_PASSWORD = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:@/]*):(?P<secret>[^@/]*)@")
_PASSWORD_PARAM = re.compile(r"(?i)(password=)[^&\s]*")


def redact_url(url: str) -> str:
    """A state URL fit to print: the password (in the authority or a `password=` parameter) hidden."""
    shown = _PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)
    return _PASSWORD_PARAM.sub(r"\1***", shown)


def url_secrets(url: str) -> list[str]:
    """The secret parts of a URL, to scrub from any message a driver builds."""
    found = [m["secret"] for m in _PASSWORD.finditer(url) if m["secret"]]
    found += [m.group(0)[len("password="):] for m in _PASSWORD_PARAM.finditer(url)]
    return [s for s in found if s and s != "***"]


def dumps(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


@dataclass(frozen=True)
class RunRow:
    id: str
    workflow: str
    status: str
    trigger: str
    started_at: str
    finished_at: str | None
    heartbeat_at: str | None
    pid: int | None
    host: str | None
    inputs: dict[str, Any]
    options: dict[str, Any]
    exit_code: int | None
    error: str | None
    tokens: dict[str, int]
    slot: str | None

    @property
    def effective_status(self) -> str:
        """`running` only while its process lives; otherwise it `crashed`."""
        if self.status != "running":
            return self.status
        return "running" if alive(self.pid, self.host, self.heartbeat_at) else "crashed"


def alive(pid: int | None, host: str | None, heartbeat: str | None) -> bool:
    """A run lives while its heartbeat is fresh and, on this host, its process exists.

    From another host only the heartbeat can tell, so a machine that died is seen `crashed` by
    every other once its heartbeat is older than the staleness window. A zombie has finished, and
    a pid whose heartbeat went stale may have been reused: neither counts as the run.
    """
    fresh = heartbeat is not None and (utc_now() - parse_iso(heartbeat)).total_seconds() < stale_seconds()
    if pid is not None and host == host_id():
        from orchestr.lock import process_start

        return fresh and process_start(pid) is not None
    return fresh


@dataclass(frozen=True)
class LockHandover:
    """What a child process needs to take over a held lock: environment variables and descriptors."""

    env: dict[str, str] = field(default_factory=dict)
    fds: tuple[int, ...] = ()


class Lock(Protocol):
    """One holder at a time of a named workflow lock (or its `tick` / `waiter` companions)."""

    workflow: str

    @property
    def held(self) -> bool: ...

    @property
    def where(self) -> str: ...  # the lock file, or the lease's name in the database, for messages

    def try_acquire(self, run_id: str) -> bool: ...

    def acquire(self, run_id: str, *, wait: bool = False, give_up: Callable[[], bool] | None = None) -> None: ...

    def busy_message(self) -> str: ...

    def name_holder(self, run_id: str) -> None: ...

    def holder(self) -> dict[str, object] | None: ...

    def handover(self) -> LockHandover: ...

    def handed_to(self, pid: int) -> None: ...

    def adopt_from(self, env: Mapping[str, str], run_id: str) -> bool: ...

    def release(self) -> None: ...

    def __enter__(self) -> Lock: ...

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


@dataclass(frozen=True)
class StoreInfo:
    backend: str
    url: str  # redacted
    schema_version: int | None
    current_version: int
    counts: dict[str, int]

    def to_json(self) -> dict[str, object]:
        return {"backend": self.backend, "url": self.url, "schema_version": self.schema_version,
                "current_version": self.current_version, "counts": self.counts}


class Store(Protocol):
    """Durable state: runs, steps, attempts, events, the schedule ledger, locks and heartbeats."""

    state_dir: Path  # local files (logs, outputs) stay here whichever backend holds the records
    backend: str
    url: str  # redacted: safe to print

    def close(self) -> None: ...

    # runs
    def create_run(self, *, run_id: str, workflow: str, trigger: str, inputs: Mapping[str, object],
                   options: Mapping[str, object], slot: str | None = None) -> None: ...

    def reopen_run(self, run_id: str) -> None: ...

    def heartbeat(self, run_id: str) -> None: ...

    def finish_run(self, run_id: str, *, status: str, exit_code: int, error: str | None,
                   tokens: Mapping[str, int]) -> None: ...

    def run(self, run_id: str) -> RunRow | None: ...

    def runs(self, *, workflow: str | None = None, limit: int = 50) -> list[RunRow]: ...

    def find_run(self, ref: str, *, workflow: str | None = None) -> RunRow | None: ...

    # steps, attempts, events
    def save_step(self, run_id: str, step_id: str, *, status: str, attempts: int, started_at: str | None,
                  outputs: Mapping[str, object], output: object, reason: str | None,
                  tokens: Mapping[str, int]) -> None: ...

    def steps(self, run_id: str) -> list[dict[str, Any]]: ...

    def save_attempt(self, run_id: str, step_id: str, attempt: int, **fields: object) -> None: ...

    def attempts(self, run_id: str) -> list[dict[str, Any]]: ...

    def append_event(self, event: Event) -> None: ...

    def events(self, run_id: str) -> list[dict[str, Any]]: ...

    # the schedule ledger
    def last_tick(self, workflow: str) -> tuple[str, str] | None: ...

    def record_tick(self, workflow: str, now: datetime) -> None: ...

    def record_ticks(self, workflows: Sequence[str], now: datetime) -> None: ...

    def runs_started_before(self, before: datetime) -> list[str]: ...

    def runs_still_read(self) -> set[str]: ...

    def delete_runs(self, run_ids: Sequence[str]) -> None: ...

    def claim_slots(self, workflow: str, decisions: Sequence[tuple[datetime, str, str | None]], *,
                    claimed_by: str, now: datetime) -> list[datetime]: ...

    def claim_slot(self, workflow: str, slot: datetime, *, action: str, claimed_by: str) -> bool: ...

    def take_slot(self, workflow: str, slot: datetime, run_id: str) -> bool: ...

    def settle_slot(self, workflow: str, slot: datetime, *, outcome: str, run_id: str | None = None,
                    detail: str | None = None, only_untaken: bool = False) -> bool: ...

    def claimed_slots(self, workflow: str, *, since: datetime) -> set[datetime]: ...

    def owed_slots(self, workflow: str) -> list[dict[str, Any]]: ...

    def slots_of_run(self, run_id: str) -> list[dict[str, Any]]: ...

    def slots(self, workflow: str, *, limit: int = 1000) -> list[dict[str, Any]]: ...

    # approvals: rows of the approvals table (`files` as JSON text), one per (run, step, request)
    def request_approval(self, *, run_id: str, step_id: str, workflow: str, message: str, files: str,
                         requested_at: str, expires_at: str) -> dict[str, Any]: ...

    def note_approval(self, run_id: str, step_id: str, request: int, notify: str) -> None: ...

    def approvals(self, run_id: str) -> list[dict[str, Any]]: ...

    def open_approvals(self, *, workflow: str | None = None) -> list[dict[str, Any]]: ...

    def decide_approval(self, run_id: str, step_id: str, request: int, *, decision: str, by: str,
                        comment: str | None, decided_at: str) -> bool: ...

    def consume_approval(self, run_id: str, step_id: str, request: int) -> None: ...

    def waiting_runs(self, workflow: str) -> list[RunRow]:
        """Runs stopped at an approval (`waiting`), oldest first: the durable marker that a workflow is
        busy though no process holds its lock, consulted by `run` and `tick` beside the lock."""
        ...

    # locks, schema
    def lock(self, workflow: str, *, suffix: str = "lock") -> Lock: ...

    def info(self) -> StoreInfo: ...

    def migrate(self) -> tuple[int | None, int]: ...
