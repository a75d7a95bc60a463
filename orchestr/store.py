"""Durable state under `.orchestr/`: run records and the schedule ledger, in SQLite (WAL).

Every write is one transaction, so a crash never leaves a half-written record. A corrupt,
locked or unwritable database is a StateError with the path and what to do, and is never
overwritten.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestr.errors import StateError
from orchestr.events import Event, iso, parse_iso, utc_now

SCHEMA_VERSION = 1
DB_NAME = "state.db"
INIT_LOCK = "state.db.init-lock"
HEARTBEAT_STALE_SECONDS = 60

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL, trigger TEXT NOT NULL,
  started_at TEXT NOT NULL, finished_at TEXT, heartbeat_at TEXT, pid INTEGER, host TEXT,
  inputs TEXT NOT NULL, options TEXT NOT NULL DEFAULT '{}', exit_code INTEGER, error TEXT,
  tokens TEXT NOT NULL DEFAULT '{}', slot TEXT);
CREATE INDEX IF NOT EXISTS runs_by_workflow ON runs (workflow, started_at);
CREATE TABLE IF NOT EXISTS steps (
  run_id TEXT NOT NULL, step_id TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
  started_at TEXT, finished_at TEXT, outputs TEXT NOT NULL DEFAULT '{}', output TEXT,
  reason TEXT, tokens TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (run_id, step_id));
CREATE TABLE IF NOT EXISTS attempts (
  run_id TEXT NOT NULL, step_id TEXT NOT NULL, attempt INTEGER NOT NULL, status TEXT NOT NULL,
  started_at TEXT NOT NULL, finished_at TEXT, exit_code INTEGER, error TEXT,
  stdout_tail TEXT, stderr_tail TEXT, verification TEXT NOT NULL DEFAULT '[]',
  tool_calls TEXT NOT NULL DEFAULT '[]', tokens TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (run_id, step_id, attempt));
CREATE TABLE IF NOT EXISTS events (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, ts TEXT NOT NULL,
  event TEXT NOT NULL, step TEXT, attempt INTEGER, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_run ON events (run_id, seq);
CREATE TABLE IF NOT EXISTS schedules (
  workflow TEXT PRIMARY KEY, first_tick TEXT NOT NULL, last_tick TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS slots (
  workflow TEXT NOT NULL, slot TEXT NOT NULL, claimed_at TEXT NOT NULL, claimed_by TEXT NOT NULL,
  action TEXT NOT NULL, run_id TEXT, outcome TEXT, detail TEXT, finished_at TEXT,
  PRIMARY KEY (workflow, slot));
CREATE INDEX IF NOT EXISTS slots_owed ON slots (workflow, slot) WHERE outcome IS NULL;
"""


def _dumps(value: object) -> str:
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
        return "running" if _alive(self.pid, self.host, self.heartbeat_at) else "crashed"


def _alive(pid: int | None, host: str | None, heartbeat: str | None) -> bool:
    """A run lives while its heartbeat is fresh and, on this host, its process exists.

    A zombie has finished, and a pid whose heartbeat went stale may have been reused by
    another process: neither counts as the run.
    """
    fresh = heartbeat is not None and (utc_now() - parse_iso(heartbeat)).total_seconds() < HEARTBEAT_STALE_SECONDS
    if pid is not None and host == socket.gethostname():
        from orchestr.lock import process_start

        return fresh and process_start(pid) is not None
    return fresh


class Store:
    """The one state store. Thread-safe: a single connection behind a lock."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / DB_NAME
        self._lock = threading.RLock()
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create state folder {self.state_dir}: {exc.strerror}") from None
        if not os.access(self.state_dir, os.W_OK):
            raise StateError(f"state folder {self.state_dir} is not writable; fix its permissions or set state_dir in orchestr.yaml")
        # Switching a new database to WAL does not wait on SQLite's busy handler: two processes
        # opening a fresh store at once (two ticks, two runs) would see "database is locked".
        with _exclusive(self.state_dir / INIT_LOCK):
            try:
                db = sqlite3.connect(self.path, timeout=5.0, isolation_level=None, check_same_thread=False)
                db.execute("PRAGMA busy_timeout=5000")
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
                self._check_version(db)
            except sqlite3.DatabaseError as exc:
                raise self._state_error(exc) from None
        return db

    def _check_version(self, db: sqlite3.Connection) -> None:
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            raise StateError(f"{self.path} was written by a newer orchestr (schema {row[0]}); upgrade orchestr")

    def _state_error(self, exc: sqlite3.Error) -> StateError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return StateError(f"state database {self.path} is locked by another process ({text}); try again")
        if "readonly" in text or "read-only" in text:
            return StateError(f"state database {self.path} is read-only; fix the permissions of {self.state_dir}")
        return StateError(
            f"state database {self.path} is unreadable ({text}); it was left untouched: "
            f"move it aside (e.g. mv {self.path} {self.path}.broken) to start a fresh history"
        )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise self._state_error(exc) from None

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                self._db.row_factory = sqlite3.Row
                return list(self._db.execute(sql, args).fetchall())
            except sqlite3.Error as exc:
                raise self._state_error(exc) from None
            finally:
                self._db.row_factory = None

    # --- runs -------------------------------------------------------------------------------

    def create_run(self, *, run_id: str, workflow: str, trigger: str, inputs: Mapping[str, object],
                   options: Mapping[str, object], slot: str | None = None) -> None:
        now = iso(utc_now())
        with self._tx() as db:
            db.execute(
                "INSERT INTO runs (id, workflow, status, trigger, started_at, heartbeat_at, pid, host, inputs, options, slot)"
                " VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, workflow, trigger, now, now, os.getpid(), socket.gethostname(), _dumps(inputs), _dumps(options), slot),
            )

    def reopen_run(self, run_id: str) -> None:
        """Resume: attempts its dead process left `running` become `crashed`."""
        now = iso(utc_now())
        with self._tx() as db:
            db.execute("UPDATE attempts SET status='crashed', finished_at=?, error='the orchestr process died'"
                       " WHERE run_id=? AND status='running'", (now, run_id))
            db.execute(
                "UPDATE runs SET status='running', finished_at=NULL, exit_code=NULL, error=NULL,"
                " heartbeat_at=?, pid=?, host=? WHERE id=?",
                (now, os.getpid(), socket.gethostname(), run_id),
            )

    def heartbeat(self, run_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET heartbeat_at=? WHERE id=?", (iso(utc_now()), run_id))

    def finish_run(self, run_id: str, *, status: str, exit_code: int, error: str | None, tokens: Mapping[str, int]) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status=?, exit_code=?, error=?, finished_at=?, tokens=? WHERE id=?",
                (status, exit_code, error, iso(utc_now()), _dumps(tokens), run_id),
            )

    def run(self, run_id: str) -> RunRow | None:
        rows = self._query("SELECT * FROM runs WHERE id=?", (run_id,))
        return _run_row(rows[0]) if rows else None

    def runs(self, *, workflow: str | None = None, limit: int = 50) -> list[RunRow]:
        if workflow is None:
            rows = self._query("SELECT * FROM runs ORDER BY started_at DESC, id DESC LIMIT ?", (limit,))
        else:
            rows = self._query("SELECT * FROM runs WHERE workflow=? ORDER BY started_at DESC, id DESC LIMIT ?", (workflow, limit))
        return [_run_row(r) for r in rows]

    def find_run(self, ref: str, *, workflow: str | None = None) -> RunRow | None:
        """A run by id, unique id prefix, or `last` (of the workflow when given)."""
        if ref == "last":
            found = self.runs(workflow=workflow, limit=1)
            return found[0] if found else None
        exact = self.run(ref)
        if exact is not None:
            return exact
        rows = self._query("SELECT * FROM runs WHERE id LIKE ? ORDER BY id LIMIT 2", (ref + "%",))
        return _run_row(rows[0]) if len(rows) == 1 else None

    # --- steps and attempts -----------------------------------------------------------------

    def save_step(self, run_id: str, step_id: str, *, status: str, attempts: int, started_at: str | None,
                  outputs: Mapping[str, object], output: object, reason: str | None, tokens: Mapping[str, int]) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO steps (run_id, step_id, status, attempts, started_at, finished_at, outputs, output, reason, tokens)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, step_id) DO UPDATE SET"
                " status=excluded.status, attempts=excluded.attempts, started_at=excluded.started_at,"
                " finished_at=excluded.finished_at, outputs=excluded.outputs, output=excluded.output,"
                " reason=excluded.reason, tokens=excluded.tokens",
                (run_id, step_id, status, attempts, started_at, iso(utc_now()), _dumps(outputs),
                 None if output is None else _dumps(output), reason, _dumps(tokens)),
            )

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM steps WHERE run_id=? ORDER BY started_at NULLS LAST, rowid", (run_id,))
        return [_decoded(r, ("outputs", "output", "tokens")) for r in rows]

    def save_attempt(self, run_id: str, step_id: str, attempt: int, **fields: object) -> None:
        columns = ["status", "started_at", "finished_at", "exit_code", "error", "stdout_tail", "stderr_tail",
                   "verification", "tool_calls", "tokens"]
        values = [fields.get(c) if c not in ("verification", "tool_calls", "tokens") else _dumps(fields.get(c) or ([] if c != "tokens" else {})) for c in columns]
        with self._tx() as db:
            db.execute(
                f"INSERT OR REPLACE INTO attempts (run_id, step_id, attempt, {', '.join(columns)})"
                f" VALUES (?, ?, ?, {', '.join('?' for _ in columns)})",
                (run_id, step_id, attempt, *values),
            )

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM attempts WHERE run_id=? ORDER BY started_at, step_id, attempt", (run_id,))
        return [_decoded(r, ("verification", "tool_calls", "tokens")) for r in rows]

    def append_event(self, event: Event) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO events (run_id, ts, event, step, attempt, data) VALUES (?, ?, ?, ?, ?, ?)",
                (event.run, iso(event.ts), event.event, event.step, event.attempt, _dumps(dict(event.data))),
            )

    def events(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM events WHERE run_id=? ORDER BY seq", (run_id,))
        return [_decoded(r, ("data",)) for r in rows]

    # --- schedule ledger --------------------------------------------------------------------

    def last_tick(self, workflow: str) -> tuple[str, str] | None:
        rows = self._query("SELECT first_tick, last_tick FROM schedules WHERE workflow=?", (workflow,))
        return (rows[0]["first_tick"], rows[0]["last_tick"]) if rows else None

    def record_tick(self, workflow: str, now: datetime) -> None:
        stamp = iso(now)
        with self._tx() as db:
            db.execute(
                "INSERT INTO schedules (workflow, first_tick, last_tick) VALUES (?, ?, ?)"
                " ON CONFLICT (workflow) DO UPDATE SET last_tick=MAX(last_tick, excluded.last_tick)",
                (workflow, stamp, stamp),
            )

    def claim_slots(self, workflow: str, decisions: Sequence[tuple[datetime, str, str | None]], *,
                    claimed_by: str, now: datetime) -> list[datetime]:
        """Claim due slots exactly once (the unique key) and advance the ledger, in one transaction.

        Each decision is (slot, action, outcome): a skip is claimed with its outcome already set, so
        no crash between claiming and settling can leave it open. Returns the slots this call won.
        """
        stamp, won = iso(now), []
        with self._tx() as db:
            for slot, action, outcome in decisions:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO slots (workflow, slot, claimed_at, claimed_by, action, outcome, finished_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (workflow, iso(slot), iso(utc_now()), claimed_by, action, outcome, stamp if outcome else None))
                if cursor.rowcount == 1:
                    won.append(slot)
            db.execute(
                "INSERT INTO schedules (workflow, first_tick, last_tick) VALUES (?, ?, ?)"
                " ON CONFLICT (workflow) DO UPDATE SET last_tick=MAX(last_tick, excluded.last_tick)",
                (workflow, stamp, stamp))
        return won

    def record_ticks(self, workflows: Sequence[str], now: datetime) -> None:
        """Advance the ledger of workflows that had nothing due, all in one transaction."""
        if not workflows:
            return
        stamp = iso(now)
        with self._tx() as db:
            db.executemany(
                "INSERT INTO schedules (workflow, first_tick, last_tick) VALUES (?, ?, ?)"
                " ON CONFLICT (workflow) DO UPDATE SET last_tick=MAX(last_tick, excluded.last_tick)",
                [(name, stamp, stamp) for name in workflows])

    def claim_slot(self, workflow: str, slot: datetime, *, action: str, claimed_by: str) -> bool:
        """Claim one slot (no ledger advance): False if it was already claimed."""
        with self._tx() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO slots (workflow, slot, claimed_at, claimed_by, action) VALUES (?, ?, ?, ?, ?)",
                (workflow, iso(slot), iso(utc_now()), claimed_by, action),
            )
            return cursor.rowcount == 1

    def take_slot(self, workflow: str, slot: datetime, run_id: str) -> bool:
        """Bind an owed slot to the run about to serve it; False if it was settled or taken meanwhile."""
        with self._tx() as db:
            cursor = db.execute("UPDATE slots SET run_id=? WHERE workflow=? AND slot=? AND outcome IS NULL AND run_id IS NULL",
                                (run_id, workflow, iso(slot)))
            return cursor.rowcount == 1

    def settle_slot(self, workflow: str, slot: datetime, *, outcome: str, run_id: str | None = None,
                    detail: str | None = None, only_untaken: bool = False) -> bool:
        """Record a slot's outcome; `only_untaken` settles it only if no run has taken it yet."""
        guard = " AND outcome IS NULL AND run_id IS NULL" if only_untaken else ""
        with self._tx() as db:
            cursor = db.execute(
                "UPDATE slots SET outcome=?, run_id=COALESCE(?, run_id), detail=?, finished_at=?"
                f" WHERE workflow=? AND slot=?{guard}",
                (outcome, run_id, detail, iso(utc_now()), workflow, iso(slot)),
            )
            return cursor.rowcount == 1

    def claimed_slots(self, workflow: str, *, since: datetime) -> set[datetime]:
        rows = self._query("SELECT slot FROM slots WHERE workflow=? AND slot>?", (workflow, iso(since)))
        return {parse_iso(r["slot"]) for r in rows}

    def owed_slots(self, workflow: str) -> list[dict[str, Any]]:
        """Claimed slots that are to run and have no outcome yet, oldest first."""
        rows = self._query("SELECT * FROM slots WHERE workflow=? AND outcome IS NULL AND action IN ('run', 'queue')"
                           " ORDER BY slot", (workflow,))
        return [dict(r) for r in rows]

    def slots_of_run(self, run_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self._query("SELECT * FROM slots WHERE run_id=?", (run_id,))]

    def slots(self, workflow: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM slots WHERE workflow=? ORDER BY slot DESC LIMIT ?", (workflow, limit))
        return [dict(r) for r in rows]


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """An flock held while the store is opened and its schema ensured."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StateError(f"cannot create {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _run_row(row: sqlite3.Row) -> RunRow:
    data = _decoded(row, ("inputs", "options", "tokens"))
    return RunRow(**data)


def _decoded(row: sqlite3.Row, json_columns: tuple[str, ...]) -> dict[str, Any]:
    data = dict(row)
    for column in json_columns:
        if data.get(column) is not None:
            data[column] = json.loads(data[column])
    return data
