"""The records and the ledger in SQL both backends speak; each backend supplies transactions.

Every write is one transaction (`_write`: a fixed list of statements), so a crash never leaves a
half-written record. Statements use `?` placeholders; a backend that spells them otherwise
translates them. Timestamps are ISO 8601 UTC text (sortable as text), JSON columns are text.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from orchestr.events import Event, iso, parse_iso, utc_now
from orchestr.store.base import SCHEMA_VERSION, Lock, RunRow, StoreInfo, dumps, host_id

Statement = tuple[str, tuple[object, ...]]
_ADVANCE = ("INSERT INTO schedules (workflow, first_tick, last_tick) VALUES (?, ?, ?)"
            " ON CONFLICT (workflow) DO UPDATE SET last_tick = CASE WHEN excluded.last_tick > schedules.last_tick"
            " THEN excluded.last_tick ELSE schedules.last_tick END")
_ATTEMPT_COLUMNS = ("status", "started_at", "finished_at", "exit_code", "error", "stdout_tail", "stderr_tail",
                    "verification", "tool_calls", "tokens")
_ATTEMPT_JSON: dict[str, object] = {"verification": [], "tool_calls": [], "tokens": {}}
COUNTED = ("runs", "steps", "attempts", "events", "schedules", "slots")


class SqlStore(ABC):
    """The Store protocol over a SQL database; subclasses own connections, errors and locks."""

    state_dir: Path
    backend: str
    url: str
    step_order = "rowid"  # how steps keep their insertion order

    # --- what a backend provides ------------------------------------------------------------

    @abstractmethod
    def _write(self, statements: Sequence[Statement]) -> list[int]:
        """Run the statements in one transaction; the rows each changed."""

    @abstractmethod
    def _query(self, sql: str, args: tuple[object, ...] = ()) -> list[dict[str, Any]]: ...

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def lock(self, workflow: str, *, suffix: str = "lock") -> Lock: ...

    @abstractmethod
    def schema_version(self) -> int | None:
        """The version recorded in the database, or None for an empty one."""

    @abstractmethod
    def migrate(self) -> tuple[int | None, int]: ...

    def info(self) -> StoreInfo:
        counts = {table: int(self._query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]) for table in COUNTED}
        return StoreInfo(self.backend, self.url, self.schema_version(), SCHEMA_VERSION, counts)

    # --- runs -------------------------------------------------------------------------------

    def create_run(self, *, run_id: str, workflow: str, trigger: str, inputs: Mapping[str, object],
                   options: Mapping[str, object], slot: str | None = None) -> None:
        now = iso(utc_now())
        self._write([(
            "INSERT INTO runs (id, workflow, status, trigger, started_at, heartbeat_at, pid, host, inputs, options, slot)"
            " VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
            (run_id, workflow, trigger, now, now, os.getpid(), host_id(), dumps(inputs), dumps(options), slot))])

    def reopen_run(self, run_id: str) -> None:
        """Resume: attempts its dead process left `running` become `crashed`."""
        now = iso(utc_now())
        self._write([
            ("UPDATE attempts SET status='crashed', finished_at=?, error='the orchestr process died'"
             " WHERE run_id=? AND status='running'", (now, run_id)),
            ("UPDATE runs SET status='running', finished_at=NULL, exit_code=NULL, error=NULL,"
             " heartbeat_at=?, pid=?, host=? WHERE id=?", (now, os.getpid(), host_id(), run_id)),
        ])

    def heartbeat(self, run_id: str) -> None:
        self._write([("UPDATE runs SET heartbeat_at=? WHERE id=?", (iso(utc_now()), run_id))])

    def finish_run(self, run_id: str, *, status: str, exit_code: int, error: str | None,
                   tokens: Mapping[str, int]) -> None:
        self._write([("UPDATE runs SET status=?, exit_code=?, error=?, finished_at=?, tokens=? WHERE id=?",
                      (status, exit_code, error, iso(utc_now()), dumps(tokens), run_id))])

    def run(self, run_id: str) -> RunRow | None:
        rows = self._query("SELECT * FROM runs WHERE id=?", (run_id,))
        return _run_row(rows[0]) if rows else None

    def runs(self, *, workflow: str | None = None, limit: int = 50) -> list[RunRow]:
        if workflow is None:
            rows = self._query("SELECT * FROM runs ORDER BY started_at DESC, id DESC LIMIT ?", (limit,))
        else:
            rows = self._query("SELECT * FROM runs WHERE workflow=? ORDER BY started_at DESC, id DESC LIMIT ?",
                               (workflow, limit))
        return [_run_row(r) for r in rows]

    def find_run(self, ref: str, *, workflow: str | None = None) -> RunRow | None:
        """A run by id, unique id prefix, or `last` (of the workflow when given)."""
        if ref == "last":
            found = self.runs(workflow=workflow, limit=1)
            return found[0] if found else None
        exact = self.run(ref)
        if exact is not None:
            return exact
        escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._query("SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY id LIMIT 2", (escaped + "%",))
        return _run_row(rows[0]) if len(rows) == 1 else None

    # --- steps, attempts, events ------------------------------------------------------------

    def save_step(self, run_id: str, step_id: str, *, status: str, attempts: int, started_at: str | None,
                  outputs: Mapping[str, object], output: object, reason: str | None,
                  tokens: Mapping[str, int]) -> None:
        self._write([(
            "INSERT INTO steps (run_id, step_id, status, attempts, started_at, finished_at, outputs, output, reason, tokens)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, step_id) DO UPDATE SET"
            " status=excluded.status, attempts=excluded.attempts, started_at=excluded.started_at,"
            " finished_at=excluded.finished_at, outputs=excluded.outputs, output=excluded.output,"
            " reason=excluded.reason, tokens=excluded.tokens",
            (run_id, step_id, status, attempts, started_at, iso(utc_now()), dumps(outputs),
             None if output is None else dumps(output), reason, dumps(tokens)))])

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._query(f"SELECT * FROM steps WHERE run_id=? ORDER BY started_at NULLS LAST, {self.step_order}",
                           (run_id,))
        return [_decoded(r, ("outputs", "output", "tokens"), drop=("seq",)) for r in rows]

    def save_attempt(self, run_id: str, step_id: str, attempt: int, **fields: object) -> None:
        values = [dumps(fields.get(c) or _ATTEMPT_JSON[c]) if c in _ATTEMPT_JSON else fields.get(c)
                  for c in _ATTEMPT_COLUMNS]
        updates = ", ".join(f"{c}=excluded.{c}" for c in _ATTEMPT_COLUMNS)
        self._write([(
            f"INSERT INTO attempts (run_id, step_id, attempt, {', '.join(_ATTEMPT_COLUMNS)})"
            f" VALUES (?, ?, ?, {', '.join('?' for _ in _ATTEMPT_COLUMNS)})"
            f" ON CONFLICT (run_id, step_id, attempt) DO UPDATE SET {updates}",
            (run_id, step_id, attempt, *values))])

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM attempts WHERE run_id=? ORDER BY started_at, step_id, attempt", (run_id,))
        return [_decoded(r, ("verification", "tool_calls", "tokens")) for r in rows]

    def append_event(self, event: Event) -> None:
        self._write([("INSERT INTO events (run_id, ts, event, step, attempt, data) VALUES (?, ?, ?, ?, ?, ?)",
                      (event.run, iso(event.ts), event.event, event.step, event.attempt, dumps(dict(event.data))))])

    def events(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._query("SELECT * FROM events WHERE run_id=? ORDER BY seq", (run_id,))
        return [_decoded(r, ("data",)) for r in rows]

    # --- the schedule ledger ----------------------------------------------------------------

    def last_tick(self, workflow: str) -> tuple[str, str] | None:
        rows = self._query("SELECT first_tick, last_tick FROM schedules WHERE workflow=?", (workflow,))
        return (rows[0]["first_tick"], rows[0]["last_tick"]) if rows else None

    def record_tick(self, workflow: str, now: datetime) -> None:
        stamp = iso(now)
        self._write([(_ADVANCE, (workflow, stamp, stamp))])

    # --- pruning (orchestr/prune.py decides what; these do it) ----------------------------------

    def runs_started_before(self, before: datetime) -> list[str]:
        rows = self._query("SELECT id FROM runs WHERE started_at < ? ORDER BY started_at", (iso(before),))
        return [str(r["id"]) for r in rows]

    def runs_still_read(self) -> set[str]:
        """Each workflow's newest run, owed slots' runs, and each workflow's newest settled slot's run."""
        newest = self._query("SELECT id FROM runs r WHERE started_at = "
                             "(SELECT MAX(started_at) FROM runs t WHERE t.workflow = r.workflow)")
        owed = self._query("SELECT run_id AS id FROM slots WHERE outcome IS NULL AND run_id IS NOT NULL")
        settled = self._query(
            "SELECT run_id AS id FROM slots s WHERE run_id IS NOT NULL AND outcome IS NOT NULL AND slot = ("
            "SELECT MAX(slot) FROM slots t WHERE t.workflow = s.workflow AND t.outcome IS NOT NULL)")
        return {str(r["id"]) for r in (*newest, *owed, *settled)}

    def delete_runs(self, run_ids: Sequence[str]) -> None:
        """Forget runs with their steps, attempts and events, in one transaction."""
        statements: list[Statement] = []
        for start in range(0, len(run_ids), 500):  # well under SQLite's bound-parameter limit
            chunk = tuple(run_ids[start:start + 500])
            marks = ", ".join("?" for _ in chunk)
            statements += [(f"DELETE FROM {table} WHERE run_id IN ({marks})", chunk)
                           for table in ("events", "attempts", "steps", "approvals")]
            statements.append((f"DELETE FROM runs WHERE id IN ({marks})", chunk))
        if statements:
            self._write(statements)

    def record_ticks(self, workflows: Sequence[str], now: datetime) -> None:
        """Advance the ledger of workflows that had nothing due, all in one transaction."""
        if workflows:
            stamp = iso(now)
            self._write([(_ADVANCE, (name, stamp, stamp)) for name in workflows])

    def claim_slots(self, workflow: str, decisions: Sequence[tuple[datetime, str, str | None]], *,
                    claimed_by: str, now: datetime) -> list[datetime]:
        """Claim due slots exactly once (the unique key) and advance the ledger, in one transaction.

        Each decision is (slot, action, outcome): a skip is claimed with its outcome already set, so
        no crash between claiming and settling can leave it open. Returns the slots this call won.
        """
        stamp, claimed_at = iso(now), iso(utc_now())
        inserts: list[Statement] = [(
            "INSERT INTO slots (workflow, slot, claimed_at, claimed_by, action, outcome, finished_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workflow, slot) DO NOTHING",
            (workflow, iso(slot), claimed_at, claimed_by, action, outcome, stamp if outcome else None))
            for slot, action, outcome in decisions]
        counts = self._write([*inserts, (_ADVANCE, (workflow, stamp, stamp))])
        return [slot for (slot, _, _), count in zip(decisions, counts, strict=False) if count == 1]

    def claim_slot(self, workflow: str, slot: datetime, *, action: str, claimed_by: str) -> bool:
        """Claim one slot (no ledger advance): False if it was already claimed."""
        return self._write([(
            "INSERT INTO slots (workflow, slot, claimed_at, claimed_by, action) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT (workflow, slot) DO NOTHING",
            (workflow, iso(slot), iso(utc_now()), claimed_by, action))]) == [1]

    def take_slot(self, workflow: str, slot: datetime, run_id: str) -> bool:
        """Bind an owed slot to the run about to serve it; False if it was settled or taken meanwhile."""
        return self._write([(
            "UPDATE slots SET run_id=? WHERE workflow=? AND slot=? AND outcome IS NULL AND run_id IS NULL",
            (run_id, workflow, iso(slot)))]) == [1]

    def settle_slot(self, workflow: str, slot: datetime, *, outcome: str, run_id: str | None = None,
                    detail: str | None = None, only_untaken: bool = False) -> bool:
        """Record a slot's outcome; `only_untaken` settles it only if no run has taken it yet."""
        guard = " AND outcome IS NULL AND run_id IS NULL" if only_untaken else ""
        return self._write([(
            f"UPDATE slots SET outcome=?, run_id=COALESCE(?, run_id), detail=?, finished_at=? WHERE workflow=? AND slot=?{guard}",
            (outcome, run_id, detail, iso(utc_now()), workflow, iso(slot)))]) == [1]

    def claimed_slots(self, workflow: str, *, since: datetime) -> set[datetime]:
        rows = self._query("SELECT slot FROM slots WHERE workflow=? AND slot>?", (workflow, iso(since)))
        return {parse_iso(r["slot"]) for r in rows}

    def owed_slots(self, workflow: str) -> list[dict[str, Any]]:
        """Claimed slots that are to run and have no outcome yet, oldest first."""
        return self._query("SELECT * FROM slots WHERE workflow=? AND outcome IS NULL AND action IN ('run', 'queue')"
                           " ORDER BY slot", (workflow,))

    def slots_of_run(self, run_id: str) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM slots WHERE run_id=?", (run_id,))

    def slots(self, workflow: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM slots WHERE workflow=? ORDER BY slot DESC LIMIT ?", (workflow, limit))


    # --- approvals ------------------------------------------------------------------------------

    def request_approval(self, *, run_id: str, step_id: str, workflow: str, message: str, files: str,
                         requested_at: str, expires_at: str) -> dict[str, Any]:
        """A new request, numbered after the step's earlier ones (one statement: no two get a number)."""
        self._write([(
            "INSERT INTO approvals (run_id, step_id, request, workflow, message, files, requested_at, expires_at)"
            " SELECT ?, ?, COALESCE(MAX(request), 0) + 1, ?, ?, ?, ?, ? FROM approvals WHERE run_id=? AND step_id=?",
            (run_id, step_id, workflow, message, files, requested_at, expires_at, run_id, step_id))])
        [row] = self._query("SELECT * FROM approvals WHERE run_id=? AND step_id=? ORDER BY request DESC LIMIT 1",
                            (run_id, step_id))
        return row

    def note_approval(self, run_id: str, step_id: str, request: int, notify: str) -> None:
        self._write([("UPDATE approvals SET notify=? WHERE run_id=? AND step_id=? AND request=?",
                      (notify, run_id, step_id, request))])

    def approvals(self, run_id: str) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM approvals WHERE run_id=? ORDER BY requested_at, step_id, request", (run_id,))

    def open_approvals(self, *, workflow: str | None = None) -> list[dict[str, Any]]:
        where, args = ("", ()) if workflow is None else (" AND a.workflow=?", (workflow,))
        return self._query(
            "SELECT a.* FROM approvals a JOIN runs r ON r.id = a.run_id WHERE a.consumed=0 AND r.status='waiting'"
            f"{where} ORDER BY a.requested_at, a.run_id, a.step_id", args)

    def decide_approval(self, run_id: str, step_id: str, request: int, *, decision: str, by: str,
                        comment: str | None, decided_at: str) -> bool:
        """Only an undecided, unused request takes a decision: of two at once, exactly one wins."""
        [count] = self._write([(
            "UPDATE approvals SET decision=?, decided_by=?, comment=?, decided_at=?"
            " WHERE run_id=? AND step_id=? AND request=? AND decision IS NULL AND consumed=0",
            (decision, by, comment, decided_at, run_id, step_id, request))])
        return count == 1

    def consume_approval(self, run_id: str, step_id: str, request: int) -> None:
        self._write([("UPDATE approvals SET consumed=1 WHERE run_id=? AND step_id=? AND request=?",
                      (run_id, step_id, request))])

    def waiting_runs(self, workflow: str) -> list[RunRow]:
        rows = self._query("SELECT * FROM runs WHERE workflow=? AND status='waiting' ORDER BY started_at", (workflow,))
        return [_run_row(r) for r in rows]


def _run_row(row: Mapping[str, Any]) -> RunRow:
    return RunRow(**_decoded(row, ("inputs", "options", "tokens")))


def _decoded(row: Mapping[str, Any], json_columns: tuple[str, ...], *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    data = {k: v for k, v in dict(row).items() if k not in drop}
    for column in json_columns:
        if data.get(column) is not None:
            data[column] = json.loads(data[column])
    return data
