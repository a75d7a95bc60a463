"""Approval requests and decisions, durable in the state database beside the run records.

One row per request: (run, step, request number). A run that reaches an approval step again after
a decision was used (a rejected run resumed by hand) asks anew, with the next number. A decision
is recorded only if none was (`decision IS NULL` in the UPDATE), so of two approvers at once exactly
one wins and the other is told.

The table is part of both stores' schema (version 2); it is read and written through the SQL
backends' statement helpers (`_write`: statements in one transaction with their row counts;
`_query`), so it lives in SQLite and in PostgreSQL alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from orchestr.events import iso, parse_iso
from orchestr.store import RunRow, Store

Decision = Literal["approved", "rejected", "timed-out"]



@dataclass(frozen=True)
class ShownFile:
    """A file the approver is shown, as it was when the approval was requested."""

    path: str  # relative to the project root
    sha256: str
    baseline: bool  # a copy of the file from before the run exists: `show` renders a diff

    def to_json(self) -> dict[str, object]:
        return {"path": self.path, "sha256": self.sha256, "baseline": self.baseline}


@dataclass(frozen=True)
class ApprovalRecord:
    run_id: str
    step_id: str
    request: int
    workflow: str
    message: str
    files: tuple[ShownFile, ...]
    requested_at: str
    expires_at: str
    notify: str | None
    decision: Decision | None
    decided_by: str | None
    comment: str | None
    decided_at: str | None
    consumed: bool

    def expired(self, now: datetime) -> bool:
        return self.decision is None and now >= parse_iso(self.expires_at)

    def to_json(self) -> dict[str, object]:
        return {"run": self.run_id, "step": self.step_id, "request": self.request, "workflow": self.workflow,
                "message": self.message, "files": [f.to_json() for f in self.files],
                "requested_at": self.requested_at, "expires_at": self.expires_at, "notify": self.notify,
                "decision": self.decision, "decided_by": self.decided_by, "comment": self.comment,
                "decided_at": self.decided_at}


class ApprovalBook:
    """The approvals table of one state database."""

    def __init__(self, store: Store) -> None:
        sql: Any = store  # an SQL backend (SqliteStore, PostgresStore): its statement helpers
        self.store = sql  # the table is part of the stores' schema (version 2)

    def request(self, *, run_id: str, step_id: str, workflow: str, message: str, files: list[ShownFile],
                now: datetime, expires: datetime) -> ApprovalRecord:
        """Record a new request (the next number for this run's step) and return it."""
        self.store._write([(
            "INSERT INTO approvals (run_id, step_id, request, workflow, message, files, requested_at, expires_at)"
            " SELECT ?, ?, COALESCE(MAX(request), 0) + 1, ?, ?, ?, ?, ? FROM approvals WHERE run_id=? AND step_id=?",
            (run_id, step_id, workflow, message, json.dumps([f.to_json() for f in files]), iso(now), iso(expires),
             run_id, step_id))])
        found = self.latest(run_id, step_id)
        assert found is not None
        return found

    def note_notify(self, record: ApprovalRecord, outcome: str) -> None:
        self.store._write([("UPDATE approvals SET notify=? WHERE run_id=? AND step_id=? AND request=?",
                            (outcome, record.run_id, record.step_id, record.request))])

    def latest(self, run_id: str, step_id: str) -> ApprovalRecord | None:
        rows = self.store._query("SELECT * FROM approvals WHERE run_id=? AND step_id=? ORDER BY request DESC LIMIT 1",
                                 (run_id, step_id))
        return _record(dict(rows[0])) if rows else None

    def of_run(self, run_id: str) -> list[ApprovalRecord]:
        """Every request of a run, oldest first."""
        rows = self.store._query("SELECT * FROM approvals WHERE run_id=? ORDER BY requested_at, step_id, request",
                                 (run_id,))
        return [_record(dict(r)) for r in rows]

    def open(self, *, workflow: str | None = None) -> list[ApprovalRecord]:
        """Requests of waiting runs not yet used (pending, or decided but not resumed), oldest first."""
        where, args = ("", ()) if workflow is None else (" AND a.workflow=?", (workflow,))
        rows = self.store._query(
            "SELECT a.* FROM approvals a JOIN runs r ON r.id = a.run_id WHERE a.consumed=0 AND r.status='waiting'"
            f"{where} ORDER BY a.requested_at, a.run_id, a.step_id", args)
        return [_record(dict(r)) for r in rows]

    def decide(self, record: ApprovalRecord, *, decision: Decision, by: str, comment: str | None,
               now: datetime) -> bool:
        """Record the decision unless one already was: True when this call's decision is the one kept."""
        [count] = self.store._write([(
            "UPDATE approvals SET decision=?, decided_by=?, comment=?, decided_at=?"
            " WHERE run_id=? AND step_id=? AND request=? AND decision IS NULL AND consumed=0",
            (decision, by, comment, iso(now), record.run_id, record.step_id, record.request))])
        return bool(count == 1)

    def consume(self, record: ApprovalRecord) -> None:
        """The run has used the decision: the step's next visit asks anew."""
        self.store._write([("UPDATE approvals SET consumed=1 WHERE run_id=? AND step_id=? AND request=?",
                            (record.run_id, record.step_id, record.request))])


def waiting_runs(store: Store, workflow: str) -> list[RunRow]:
    """The durable marker that a workflow is busy though no process holds its lock.

    A run stopped at an approval is recorded `waiting` and exits; `orchestr run` and `orchestr tick`
    consult this (beside the workflow's flock) so that the overlap policy holds while it waits.
    """
    sql: Any = store  # an SQL backend
    rows = sql._query("SELECT id FROM runs WHERE workflow=? AND status='waiting' ORDER BY started_at", (workflow,))
    return [run for r in rows if (run := store.run(str(r["id"]))) is not None]


def _record(row: dict[str, Any]) -> ApprovalRecord:
    files = tuple(ShownFile(str(f["path"]), str(f["sha256"]), bool(f["baseline"])) for f in json.loads(row["files"]))
    return ApprovalRecord(
        run_id=row["run_id"], step_id=row["step_id"], request=int(row["request"]), workflow=row["workflow"],
        message=row["message"], files=files, requested_at=row["requested_at"], expires_at=row["expires_at"],
        notify=row["notify"], decision=row["decision"], decided_by=row["decided_by"], comment=row["comment"],
        decided_at=row["decided_at"], consumed=bool(row["consumed"]),
    )
