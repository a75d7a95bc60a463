"""Approval requests and decisions, durable in the state database beside the run records.

One row per request: (run, step, request number). A run that reaches an approval step again after
a decision was used (a rejected run resumed by hand) asks anew, with the next number. A decision
is recorded only if none was (`decision IS NULL` in the UPDATE), so of two approvers at once exactly
one wins and the other is told.

The table is part of the stores' schema (version 2), read and written through the Store seam
(`request_approval`, `decide_approval`, ...), so it lives in SQLite, PostgreSQL and the fake alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from orchestr.events import iso, parse_iso
from orchestr.store import Store

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
    """The approvals of one state store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def request(self, *, run_id: str, step_id: str, workflow: str, message: str, files: list[ShownFile],
                now: datetime, expires: datetime) -> ApprovalRecord:
        """Record a new request (the next number for this run's step) and return it."""
        return _record(self.store.request_approval(
            run_id=run_id, step_id=step_id, workflow=workflow, message=message,
            files=json.dumps([f.to_json() for f in files]), requested_at=iso(now), expires_at=iso(expires)))

    def note_notify(self, record: ApprovalRecord, outcome: str) -> None:
        self.store.note_approval(record.run_id, record.step_id, record.request, outcome)

    def latest(self, run_id: str, step_id: str) -> ApprovalRecord | None:
        mine = [r for r in self.store.approvals(run_id) if r["step_id"] == step_id]
        return _record(max(mine, key=lambda r: int(r["request"]))) if mine else None

    def of_run(self, run_id: str) -> list[ApprovalRecord]:
        """Every request of a run, oldest first."""
        return [_record(r) for r in self.store.approvals(run_id)]

    def open(self, *, workflow: str | None = None) -> list[ApprovalRecord]:
        """Requests of waiting runs not yet used (pending, or decided but not resumed), oldest first."""
        return [_record(r) for r in self.store.open_approvals(workflow=workflow)]

    def decide(self, record: ApprovalRecord, *, decision: Decision, by: str, comment: str | None,
               now: datetime) -> bool:
        """Record the decision unless one already was: True when this call's decision is the one kept."""
        return self.store.decide_approval(record.run_id, record.step_id, record.request, decision=decision, by=by,
                                          comment=comment, decided_at=iso(now))

    def consume(self, record: ApprovalRecord) -> None:
        """The run has used the decision: the step's next visit asks anew."""
        self.store.consume_approval(record.run_id, record.step_id, record.request)


def _record(row: dict[str, Any]) -> ApprovalRecord:
    files = tuple(ShownFile(str(f["path"]), str(f["sha256"]), bool(f["baseline"])) for f in json.loads(row["files"]))
    return ApprovalRecord(
        run_id=row["run_id"], step_id=row["step_id"], request=int(row["request"]), workflow=row["workflow"],
        message=row["message"], files=files, requested_at=row["requested_at"], expires_at=row["expires_at"],
        notify=row["notify"], decision=row["decision"], decided_by=row["decided_by"], comment=row["comment"],
        decided_at=row["decided_at"], consumed=bool(row["consumed"]),
    )
