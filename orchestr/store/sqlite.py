"""The default store: SQLite (WAL) at `<state_dir>/state.db`, for one machine.

A corrupt, locked, full or unwritable database is a StateError with the path and what to do, and
is never overwritten. A busy database (another process writing) is waited on, never a reason to
abort a running workflow. The workflow lock is an flock (orchestr/lock.py).
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from orchestr.errors import StateError
from orchestr.events import iso, utc_now
from orchestr.lock import WorkflowLock
from orchestr.store.base import SCHEMA_VERSION, host_id
from orchestr.store.sql import SqlStore, Statement

DB_NAME = "state.db"
INIT_LOCK = "state.db.init-lock"
BUSY_VAR = "ORCHESTR_STATE_BUSY_TIMEOUT"  # seconds a write waits for a busy database (default 300)
INIT_VAR = "ORCHESTR_STATE_INIT_TIMEOUT"  # seconds to wait for another process opening it (default 30)

_V1 = """
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
"""
# version -> the statements that bring the previous version to it
MIGRATIONS: dict[int, str] = {
    1: _V1,
    # `orchestr runs` reads the newest runs through an index: flat in the size of the history.
    2: "CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at, id);"
       "CREATE INDEX IF NOT EXISTS slots_by_run ON slots (run_id);"
       # the owed slots (no outcome yet) without reading a workflow's whole history
       "CREATE INDEX IF NOT EXISTS slots_owed ON slots (workflow, slot) WHERE outcome IS NULL;"
       # approval requests and decisions (orchestr/approvals/records.py)
       + """CREATE TABLE IF NOT EXISTS approvals (
  run_id TEXT NOT NULL, step_id TEXT NOT NULL, request INTEGER NOT NULL, workflow TEXT NOT NULL,
  message TEXT NOT NULL, files TEXT NOT NULL DEFAULT '[]', requested_at TEXT NOT NULL,
  expires_at TEXT NOT NULL, notify TEXT, decision TEXT, decided_by TEXT, comment TEXT,
  decided_at TEXT, consumed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (run_id, step_id, request));
CREATE INDEX IF NOT EXISTS approvals_open ON approvals (workflow) WHERE consumed = 0;
""",
}


def _env_seconds(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name) or default)
    except ValueError:
        return default


class SqliteStore(SqlStore):
    """One connection behind a lock (thread-safe). `read_only` opens a read-only state dir as it is."""

    backend = "sqlite"

    def __init__(self, state_dir: Path, *, read_only: bool = False, migrating: bool = False) -> None:
        self.state_dir = state_dir
        self.path = state_dir / DB_NAME
        self.url = str(self.path)
        self._lock = threading.RLock()
        self._busy_wait = _env_seconds(BUSY_VAR, 300.0)
        self._migrating = migrating
        writable = not (read_only and self.path.is_file() and not os.access(state_dir, os.W_OK))
        self._db = self._open() if writable else self._open_read_only()

    # --- opening ----------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StateError(f"cannot create state folder {self.state_dir}: {exc.strerror}") from None
        if not os.access(self.state_dir, os.W_OK):
            raise StateError(f"state folder {self.state_dir} is not writable; fix its permissions or set state_dir in orchestr.yaml")
        self._refuse_emptied()
        # Switching a new database to WAL does not wait on SQLite's busy handler: two processes
        # opening a fresh store at once (two ticks, two runs) would see "database is locked".
        with _exclusive(self.state_dir / INIT_LOCK, timeout=_env_seconds(INIT_VAR, 30.0)):
            try:
                wait = min(10.0, self._busy_wait)
                db = sqlite3.connect(self.path, timeout=wait, isolation_level=None, check_same_thread=False)
                db.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                self._db = db
                if self.schema_version() is None:
                    self._apply(db, 0)
                self._check_version()
            except sqlite3.DatabaseError as exc:
                raise self._state_error(exc) from None
        return db

    def _open_read_only(self) -> sqlite3.Connection:
        """A state dir this user cannot write: read the database as it stands (no WAL files made)."""
        try:
            db = sqlite3.connect(f"file:{self.path}?immutable=1", uri=True, isolation_level=None, check_same_thread=False)
            self._db = db
            self._check_version()
        except sqlite3.DatabaseError as exc:
            raise self._state_error(exc) from None
        return db

    def _refuse_emptied(self) -> None:
        """A 0-byte state.db beside earlier runs' files is a lost history, not a new one."""
        try:
            empty = self.path.stat().st_size == 0
        except OSError:
            return
        traces = [name for name in ("runs", "logs", "locks") if any((self.state_dir / name).glob("*"))]
        if empty and traces:
            raise StateError(
                f"state database {self.path} is empty (0 bytes), but {self.state_dir} holds earlier runs' files "
                f"({', '.join(n + '/' for n in traces)}): the run history was lost (a full disk? an interrupted copy?). "
                f"Restore {self.path} from a backup; or, to start a new history, delete the empty file")

    def schema_version(self) -> int | None:
        with self._lock:
            try:
                if not self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchall():
                    return None
                row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            except sqlite3.Error as exc:
                raise self._state_error(exc) from None
        return _version(row[0] if row else None, self.url)

    def _check_version(self) -> None:
        check_version(self.schema_version(), self.url, migrating=self._migrating)

    def _apply(self, db: sqlite3.Connection, current: int) -> None:
        script = "".join(MIGRATIONS[v] for v in range(current + 1, SCHEMA_VERSION + 1))
        db.executescript(f"BEGIN IMMEDIATE;{script}"
                         f"INSERT INTO meta VALUES ('schema_version', '{SCHEMA_VERSION}')"
                         " ON CONFLICT (key) DO UPDATE SET value=excluded.value; COMMIT;")

    def migrate(self) -> tuple[int | None, int]:
        with self._lock, _exclusive(self.state_dir / INIT_LOCK, timeout=_env_seconds(INIT_VAR, 30.0)):
            before = self.schema_version()
            if before is not None and before > SCHEMA_VERSION:
                check_version(before, self.url)
            if before != SCHEMA_VERSION:
                try:
                    self._apply(self._db, before or 0)
                except sqlite3.Error as exc:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise self._state_error(exc) from None
            return before, SCHEMA_VERSION

    # --- errors, transactions ---------------------------------------------------------------

    def _state_error(self, exc: sqlite3.Error) -> StateError:
        text = str(exc)
        if "disk is full" in text or "disk I/O" in text:
            return StateError(
                f"the disk holding the state database {self.path} is full or failing ({text}): the last change was "
                f"not recorded; the history before it is intact. Free some space (df -h {self.state_dir}), then "
                "resume the run (`orchestr run WORKFLOW --resume last`)")
        if "locked" in text or "busy" in text:
            return StateError(f"state database {self.path} stayed locked by another process for {self._busy_wait:.0f}s "
                              f"({text}); find it with `fuser {self.path}` and try again")
        if "readonly" in text or "read-only" in text:
            return StateError(f"state database {self.path} is read-only; fix the permissions of {self.state_dir}")
        if "not a database" in text or "malformed" in text:
            return StateError(
                f"state database {self.path} is damaged ({text}); it was left untouched: restore it from a backup, "
                f"or move it aside (mv {self.path} {self.path}.broken) to start a fresh history")
        return StateError(f"state database {self.path} could not be used ({text}); it was left untouched")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, statements: Sequence[Statement]) -> list[int]:
        waited_since = time.monotonic()
        while True:
            try:
                return self._transaction(statements)
            except sqlite3.OperationalError as exc:
                busy = "locked" in str(exc) or "busy" in str(exc)
                if not busy or time.monotonic() - waited_since > self._busy_wait:
                    raise self._state_error(exc) from None
                time.sleep(0.2)
            except sqlite3.Error as exc:
                raise self._state_error(exc) from None

    def _transaction(self, statements: Sequence[Statement]) -> list[int]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                counts = [self._db.execute(sql, args).rowcount for sql, args in statements]
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            return counts

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[dict[str, Any]]:
        with self._lock:
            try:
                cursor = self._db.execute(sql, args)
                names = [d[0] for d in cursor.description]
                return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
            except sqlite3.Error as exc:
                raise self._state_error(exc) from None

    def lock(self, workflow: str, *, suffix: str = "lock") -> WorkflowLock:
        return WorkflowLock(self.state_dir, workflow, suffix=suffix)


def _version(raw: object, where: str) -> int | None:
    if raw is None:
        return None
    try:
        return int(str(raw))
    except ValueError:
        raise StateError(f"state database {where} records schema_version {raw!r}, which is not a number: its meta "
                         "table was altered; restore the database from a backup") from None


def check_version(version: int | None, where: str, *, migrating: bool = False) -> None:
    if version is None or version == SCHEMA_VERSION or (migrating and version < SCHEMA_VERSION):
        return
    if version > SCHEMA_VERSION:
        raise StateError(f"state database {where} has schema version {version}, newer than this orchestr knows "
                         f"({SCHEMA_VERSION}): it was written by a newer orchestr; upgrade orchestr")
    raise StateError(f"state database {where} has schema version {version}, older than this orchestr's "
                     f"({SCHEMA_VERSION}): back it up, then run `orchestr state migrate`")


@contextmanager
def _exclusive(path: Path, *, timeout: float) -> Iterator[None]:
    """An flock held while the store is opened and its schema ensured; it names its holder."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StateError(f"cannot create {path}: {exc.strerror}") from None
    try:
        give_up = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > give_up:
                    holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "an unknown process"
                    raise StateError(f"{path} has been held for more than {timeout:.0f}s by {holder} (opening the "
                                     "state database); if that process is stuck, end it and try again") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {host_id()} since {iso(utc_now())}".encode(), 0)
        yield
    finally:
        os.close(fd)
