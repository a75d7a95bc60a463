"""The shared store: PostgreSQL through psycopg 3 and a small pool, for many machines, one ledger.

Why a lease row and not an advisory lock for the workflow lock: an advisory lock belongs to one
database session, and `orchestr tick` must hand the workflow's lock to the drainer it starts
without an instant in which it looks free (two machines would both start a run). A session cannot
be handed to another process; a row can. So the lock is a lease: a row keyed by the lock's name,
holding a random token, the holder (run, pid, its start time, host) and `beat_at`, refreshed by a
heartbeat thread while held and deleted on release. The tick hands the token over (environment
variable ORCHESTR_LOCK_LEASE) and re-points the row at the child's pid; the drainer adopts it by
token. A holder that dies stops beating: the lease is free once `beat_at` is older than the
staleness window (from any machine; the database's clock decides, so hosts' clocks need not
agree), or at once on the holder's own machine when its pid is gone.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from orchestr.errors import Busy, StateError
from orchestr.lock import POLL_SECONDS, process_start
from orchestr.store.base import (
    SCHEMA_VERSION,
    LockHandover,
    heartbeat_interval,
    host_id,
    redact_url,
    stale_seconds,
    url_secrets,
)
from orchestr.store.sql import SqlStore, Statement

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

LEASE_VAR = "ORCHESTR_LOCK_LEASE"
_SCHEMA_LOCK = 0x6F726368  # the advisory lock that serialises creating and migrating the schema

MIGRATIONS: dict[int, str] = {
    1: """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
  id TEXT PRIMARY KEY, workflow TEXT NOT NULL, status TEXT NOT NULL, trigger TEXT NOT NULL,
  started_at TEXT NOT NULL, finished_at TEXT, heartbeat_at TEXT, pid INTEGER, host TEXT,
  inputs TEXT NOT NULL, options TEXT NOT NULL DEFAULT '{}', exit_code INTEGER, error TEXT,
  tokens TEXT NOT NULL DEFAULT '{}', slot TEXT);
CREATE INDEX IF NOT EXISTS runs_by_workflow ON runs (workflow, started_at);
CREATE TABLE IF NOT EXISTS steps (
  seq BIGSERIAL, run_id TEXT NOT NULL, step_id TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
  started_at TEXT, finished_at TEXT, outputs TEXT NOT NULL DEFAULT '{}', output TEXT,
  reason TEXT, tokens TEXT NOT NULL DEFAULT '{}', PRIMARY KEY (run_id, step_id));
CREATE TABLE IF NOT EXISTS attempts (
  run_id TEXT NOT NULL, step_id TEXT NOT NULL, attempt INTEGER NOT NULL, status TEXT NOT NULL,
  started_at TEXT NOT NULL, finished_at TEXT, exit_code INTEGER, error TEXT,
  stdout_tail TEXT, stderr_tail TEXT, verification TEXT NOT NULL DEFAULT '[]',
  tool_calls TEXT NOT NULL DEFAULT '[]', tokens TEXT NOT NULL DEFAULT '{}',
  PRIMARY KEY (run_id, step_id, attempt));
CREATE TABLE IF NOT EXISTS events (
  seq BIGSERIAL PRIMARY KEY, run_id TEXT NOT NULL, ts TEXT NOT NULL,
  event TEXT NOT NULL, step TEXT, attempt INTEGER, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS events_by_run ON events (run_id, seq);
CREATE TABLE IF NOT EXISTS schedules (
  workflow TEXT PRIMARY KEY, first_tick TEXT NOT NULL, last_tick TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS slots (
  workflow TEXT NOT NULL, slot TEXT NOT NULL, claimed_at TEXT NOT NULL, claimed_by TEXT NOT NULL,
  action TEXT NOT NULL, run_id TEXT, outcome TEXT, detail TEXT, finished_at TEXT,
  PRIMARY KEY (workflow, slot));
""",
    2: """
CREATE INDEX IF NOT EXISTS runs_by_start ON runs (started_at, id);
CREATE INDEX IF NOT EXISTS slots_by_run ON slots (run_id);
CREATE INDEX IF NOT EXISTS slots_owed ON slots (workflow, slot) WHERE outcome IS NULL;
CREATE TABLE IF NOT EXISTS leases (
  name TEXT PRIMARY KEY, token TEXT NOT NULL, holder TEXT NOT NULL, host TEXT NOT NULL,
  pid INTEGER NOT NULL, start TEXT, beat_at TIMESTAMPTZ NOT NULL);
CREATE TABLE IF NOT EXISTS approvals (
  run_id TEXT NOT NULL, step_id TEXT NOT NULL, request INTEGER NOT NULL, workflow TEXT NOT NULL,
  message TEXT NOT NULL, files TEXT NOT NULL DEFAULT '[]', requested_at TEXT NOT NULL,
  expires_at TEXT NOT NULL, notify TEXT, decision TEXT, decided_by TEXT, comment TEXT,
  decided_at TEXT, consumed INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (run_id, step_id, request));
CREATE INDEX IF NOT EXISTS approvals_open ON approvals (workflow) WHERE consumed = 0;
""",
}


def _sql(statement: str) -> str:
    return statement.replace("?", "%s")


class PostgresStore(SqlStore):
    backend = "postgresql"
    step_order = "seq"

    def __init__(self, url: str, *, state_dir: Path, migrating: bool = False) -> None:
        self.state_dir = state_dir
        self.url = redact_url(url)
        self._secrets = url_secrets(url)
        self._busy_wait = float(os.environ.get("ORCHESTR_STATE_BUSY_TIMEOUT") or 300)
        self._ensure_schema(url, migrating=migrating)
        self._pool = self._open_pool(url)

    # --- connections and errors -------------------------------------------------------------

    def _error(self, exc: Exception, doing: str) -> StateError:
        text = " ".join(str(exc).split())
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return StateError(f"PostgreSQL state store {self.url}: {doing} failed: {text or type(exc).__name__}")

    def _connect(self, url: str) -> psycopg.Connection[Any]:
        import psycopg
        from psycopg.rows import dict_row

        try:
            return psycopg.connect(url, autocommit=True, row_factory=dict_row, connect_timeout=10)  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise self._error(exc, "connecting") from None

    def _open_pool(self, url: str) -> ConnectionPool[Any]:
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool

        return ConnectionPool(url, min_size=1, max_size=4, open=True, timeout=30, name="orchestr",
                              kwargs={"autocommit": True, "row_factory": dict_row, "connect_timeout": 10})

    def _ensure_schema(self, url: str, *, migrating: bool) -> None:
        """Create the schema on first use (under an advisory lock); refuse one older or newer."""
        with self._connect(url) as conn:
            version = self._version_of(conn)
            if version is None:
                self._apply(conn, 0)
                version = SCHEMA_VERSION
        from orchestr.store.sqlite import check_version

        check_version(version, self.url, migrating=migrating)

    def _version_of(self, conn: psycopg.Connection[Any]) -> int | None:
        import psycopg

        from orchestr.store.sqlite import _version

        try:
            if conn.execute("SELECT to_regclass('meta') AS t").fetchone()["t"] is None:  # type: ignore[index]
                return None
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except psycopg.Error as exc:
            raise self._error(exc, "reading the schema version") from None
        return _version(row["value"] if row else None, self.url)  # type: ignore[index]

    def _apply(self, conn: psycopg.Connection[Any], current: int) -> None:
        import psycopg

        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                current = self._version_of(conn) or current  # another process may have just done it
                for version in range(current + 1, SCHEMA_VERSION + 1):
                    conn.execute(MIGRATIONS[version])  # type: ignore[arg-type]
                conn.execute("INSERT INTO meta VALUES ('schema_version', %s) ON CONFLICT (key) DO UPDATE"
                             " SET value=excluded.value", (str(SCHEMA_VERSION),))
        except psycopg.Error as exc:
            raise self._error(exc, "creating or migrating the schema") from None

    def schema_version(self) -> int | None:
        with self._connection("reading the schema version") as conn:
            return self._version_of(conn)

    def migrate(self) -> tuple[int | None, int]:
        from orchestr.store.sqlite import check_version

        with self._connection("migrating") as conn:
            before = self._version_of(conn)
            if before is not None and before > SCHEMA_VERSION:
                check_version(before, self.url)
            if before != SCHEMA_VERSION:
                self._apply(conn, before or 0)
        return before, SCHEMA_VERSION

    @contextmanager
    def _connection(self, doing: str) -> Iterator[psycopg.Connection[Any]]:
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._error(exc, doing) from None

    def close(self) -> None:
        self._pool.close()

    def _write(self, statements: Sequence[Statement]) -> list[int]:
        """One transaction; a lost connection or a server restart is waited out, not fatal to a run."""
        import psycopg
        from psycopg_pool import PoolTimeout

        since = time.monotonic()
        while True:
            try:
                with self._pool.connection() as conn:
                    if len(statements) == 1:  # one statement is its own transaction: no BEGIN/COMMIT trips
                        return [conn.execute(_sql(statements[0][0]), statements[0][1]).rowcount]  # type: ignore[arg-type]
                    with conn.transaction():
                        return [conn.execute(_sql(sql), args).rowcount for sql, args in statements]  # type: ignore[arg-type]
            except (psycopg.OperationalError, PoolTimeout) as exc:
                if time.monotonic() - since > self._busy_wait:
                    raise self._error(exc, "writing") from None
                time.sleep(1.0)
            except psycopg.Error as exc:
                raise self._error(exc, "writing") from None

    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[dict[str, Any]]:
        with self._connection("reading") as conn:
            return list(conn.execute(_sql(sql), args).fetchall())  # type: ignore[arg-type]

    def lock(self, workflow: str, *, suffix: str = "lock") -> LeaseLock:
        return LeaseLock(self, workflow, suffix=suffix)


class LeaseLock:
    """A workflow lock as a lease row with a heartbeat (see the module's docstring)."""

    def __init__(self, store: PostgresStore, workflow: str, *, suffix: str = "lock") -> None:
        self.store = store
        self.workflow = workflow
        self.name = f"{suffix}:{workflow}"
        self._token: str | None = None
        self._handed = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._token is not None

    @property
    def where(self) -> str:
        return f"lease '{self.name}' in {self.store.url}"

    def try_acquire(self, run_id: str) -> bool:
        token = secrets.token_hex(16)
        pid = os.getpid()
        take = ("INSERT INTO leases (name, token, holder, host, pid, start, beat_at) VALUES (?, ?, ?, ?, ?, ?, now())"
                " ON CONFLICT (name) DO UPDATE SET token=excluded.token, holder=excluded.holder, host=excluded.host,"
                " pid=excluded.pid, start=excluded.start, beat_at=now()"
                " WHERE leases.beat_at < now() - make_interval(secs => ?)")
        args = (self.name, token, run_id, host_id(), pid, process_start(pid), stale_seconds())
        if self.store._write([(take, args)]) != [1]:
            dead = self._dead_local_holder()
            if dead is None or self.store._write([("DELETE FROM leases WHERE name=? AND token=?", (self.name, dead)),
                                                  (take, args)]) != [1, 1]:
                return False
        self._token = token
        self._start_heartbeat()
        return True

    def _dead_local_holder(self) -> str | None:
        """The token of a lease held by a process of this machine that is gone (or whose pid was reused)."""
        rows = self.store._query("SELECT token, host, pid, start FROM leases WHERE name=?", (self.name,))
        if rows and rows[0]["host"] == host_id() and process_start(int(rows[0]["pid"])) != rows[0]["start"]:
            return str(rows[0]["token"])
        return None

    def acquire(self, run_id: str, *, wait: bool = False, give_up: Callable[[], bool] | None = None) -> None:
        while not self.try_acquire(run_id):
            if not wait or (give_up is not None and give_up()):
                raise Busy(self.busy_message())
            time.sleep(POLL_SECONDS * 5)

    def busy_message(self) -> str:
        holder = self.holder() or {}
        return (f"workflow '{self.workflow}' is busy: run {holder.get('run', '?')} (pid {holder.get('pid', '?')} "
                f"on {holder.get('host', '?')}) holds its {self.where}")

    def name_holder(self, run_id: str) -> None:
        assert self._token is not None, "the lock is not held"
        pid = os.getpid()
        self.store._write([("UPDATE leases SET holder=?, pid=?, start=?, host=? WHERE name=? AND token=?",
                            (run_id, pid, process_start(pid), host_id(), self.name, self._token))])

    def holder(self) -> dict[str, object] | None:
        rows = self.store._query(
            "SELECT holder, host, pid, start FROM leases WHERE name=? AND beat_at >= now() - make_interval(secs => ?)",
            (self.name, stale_seconds()))
        if not rows:
            return None
        row = rows[0]
        if row["host"] == host_id() and process_start(int(row["pid"])) != row["start"]:
            return None
        return {"run": row["holder"], "pid": row["pid"], "start": row["start"], "host": row["host"]}

    def handover(self) -> LockHandover:
        assert self._token is not None, "the lock is not held"
        return LockHandover(env={LEASE_VAR: self._token})

    def handed_to(self, pid: int) -> None:
        """The child now holds the lease: point it at the child, and stop beating (its job now)."""
        assert self._token is not None
        self.store._write([("UPDATE leases SET pid=?, start=?, holder=?, beat_at=now() WHERE name=? AND token=?",
                            (pid, process_start(pid), "drainer", self.name, self._token))])
        self._handed = True

    def adopt_from(self, env: Mapping[str, str], run_id: str) -> bool:
        token = env.get(LEASE_VAR)
        if not token:
            return False
        pid = os.getpid()
        changed = self.store._write([(
            "UPDATE leases SET pid=?, start=?, holder=?, host=?, beat_at=now() WHERE name=? AND token=?",
            (pid, process_start(pid), run_id, host_id(), self.name, token))])
        if changed != [1]:
            raise StateError(f"the {self.where} handed to this process was lost before it started "
                             "(its lease went stale); the next tick serves the slots")
        self._token = token
        self._start_heartbeat()
        return True

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._beat = threading.Thread(target=self._keep_alive, args=(self._token,), daemon=True,
                                      name=f"lease {self.name}")
        self._beat.start()

    def _keep_alive(self, token: str) -> None:
        """Refresh the lease; a failed beat (the server away) is retried on the next one, never fatal."""
        while not self._stop.wait(heartbeat_interval()):
            try:
                self.store._write([("UPDATE leases SET beat_at=now() WHERE name=? AND token=?", (self.name, token))])
            except StateError:
                continue

    def release(self) -> None:
        if self._token is None:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        token, self._token = self._token, None
        if not self._handed:
            self.store._write([("DELETE FROM leases WHERE name=? AND token=?", (self.name, token))])

    def __enter__(self) -> LeaseLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
