"""Recording a person's decision: on exactly the content they were shown, once."""

from __future__ import annotations

import getpass
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from orchestr.approvals.files import sha256_of
from orchestr.approvals.records import ApprovalBook, ApprovalRecord, Decision
from orchestr.errors import ApprovalRefused, UsageError
from orchestr.events import Event
from orchestr.permissions import PathDenied, resolve_in_root
from orchestr.store import RunRow, Store


@dataclass(frozen=True)
class Decided:
    run: RunRow
    record: ApprovalRecord
    decision: Decision
    by: str


def who(by: str | None) -> str:
    if by:
        return by
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's numeric uid)
        return "unknown"


def waiting_run(store: Store, ref: str) -> RunRow:
    run = store.find_run(ref)
    if run is None:
        raise UsageError(f"no run '{ref}' (see `orchestr approvals list`)")
    return run


def open_request(book: ApprovalBook, run: RunRow, step: str | None) -> ApprovalRecord:
    """The run's request to decide: the one of `step`, or its only one."""
    records = [r for r in book.of_run(run.id) if not r.consumed]
    if not records or run.status != "waiting":
        raise UsageError(f"run {run.id} is not waiting for an approval (it is {run.effective_status})")
    if step is not None:
        found = [r for r in records if r.step_id == step]
        if not found:
            raise UsageError(f"run {run.id} has no open approval at step '{step}' "
                             f"(open: {', '.join(r.step_id for r in records)})")
        return found[-1]
    if len(records) > 1:
        raise UsageError(f"run {run.id} waits at {len(records)} approvals ({', '.join(r.step_id for r in records)}): "
                         "name the step, e.g. `orchestr approve RUN STEP`")
    return records[0]


def changed_files(record: ApprovalRecord, root: Path) -> list[str]:
    """The shown files whose content is no longer what was shown."""
    changed = []
    for shown in record.files:
        try:
            path = resolve_in_root(root, shown.path)
            now = sha256_of(path) if path.is_file() else None
        except (PathDenied, OSError):
            now = None
        if now != shown.sha256:
            changed.append(shown.path)
    return changed


def decide(store: Store, ref: str, step: str | None, *, decision: Decision, by: str | None, comment: str | None,
           root: Path, now: datetime) -> Decided:
    """Record `decision` on the run's open request, or raise saying why not (nothing recorded)."""
    book = ApprovalBook(store)
    run = waiting_run(store, ref)
    record = open_request(book, run, step)
    person = who(by)
    if record.decision is not None:
        raise ApprovalRefused(_already(record))
    if record.expired(now):  # too late: recorded as timed out (by the clock), and the caller finishes the run
        if book.decide(record, decision="timed-out", by="orchestr", comment="no decision before the timeout", now=now):
            return Decided(run, record, "timed-out", "orchestr")
        raise ApprovalRefused(_already(book.latest(run.id, record.step_id) or record))
    if decision == "approved":
        changed = changed_files(record, root)
        if changed:
            raise ApprovalRefused(
                f"{', '.join(changed)} changed after the approval was requested: what you would approve is not "
                f"what was shown, so nothing was recorded; review it (`orchestr approvals show {run.id}`) and "
                f"reject it, or restore the file to the content shown")
    if not book.decide(record, decision=decision, by=person, comment=comment, now=now):
        latest = book.latest(run.id, record.step_id)
        raise ApprovalRefused(_already(latest or record))
    store.append_event(Event(now, run.id, run.workflow, "approval.decided", record.step_id, None,
                             {"decision": decision, "by": person, "comment": comment, "request": record.request}))
    return Decided(run, record, decision, person)


def _already(record: ApprovalRecord) -> str:
    why = f" ({record.comment})" if record.comment else ""
    return (f"the approval of {record.run_id} at step '{record.step_id}' was already decided: {record.decision} "
            f"by {record.decided_by} at {record.decided_at}{why}; your decision was not recorded")
