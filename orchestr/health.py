"""`orchestr status`: is every schedule accounted for? Non-zero when it is not, with the reason.

It tells the current truth: the most recent settled slot decides (a later slot that `ran` clears
earlier failures, which stay in history); a slot that passed with no tick, a claimed slot that
never got a run, and a run past its deadline are problems as they happen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from orchestr.events import iso, parse_iso
from orchestr.project import LoadedWorkflow, workflow_log
from orchestr.store import Store

BAD_OUTCOMES = {"failed": "failed", "unverified": "was unverified", "timed-out": "timed out"}
START_GRACE = timedelta(minutes=2)  # a claimed slot whose run has not begun after this is stuck


def format_elapsed(span: timedelta) -> str:
    """`3m 2s`, `1h 5m`, `2d 3h`, `0s`: the two largest units, for people."""
    seconds = max(0, int(span.total_seconds()))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size or (unit == "s" and not parts):
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2])


@dataclass
class WorkflowHealth:
    workflow: str
    cron: str
    timezone: str
    last_tick: str | None
    last_slot: str | None
    last_outcome: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict[str, object]:
        return {"workflow": self.workflow, "cron": self.cron, "timezone": self.timezone, "ok": self.ok,
                "last_tick": self.last_tick, "last_slot": self.last_slot, "last_outcome": self.last_outcome,
                "problems": self.problems}


def check_workflow(store: Store, workflow: LoadedWorkflow, *, now: datetime, grace: timedelta) -> WorkflowHealth:
    from orchestr.scheduling.policy import missed_slots

    schedule = workflow.spec.schedule
    assert schedule is not None
    ledger = store.last_tick(workflow.name)
    slots = store.slots(workflow.name, limit=50)
    settled = [s for s in slots if s["outcome"]]
    health = WorkflowHealth(workflow.name, schedule.cron, schedule.timezone, ledger[1] if ledger else None,
                            settled[0]["slot"] if settled else None, settled[0]["outcome"] if settled else None)
    if ledger is None:
        health.problems.append("no tick has ever run for this schedule: install one with `orchestr schedule export`")
        return health
    missed = missed_slots(schedule, now=now, last_tick=parse_iso(ledger[1]), grace=grace)
    if missed:
        health.problems.append(f"{len(missed)} slot(s) with no record since the last tick at {ledger[1]} "
                               f"(first: {iso(missed[0])}): no tick came; is cron/systemd running?")
    last_run = next((s for s in settled if not str(s["outcome"]).startswith("skipped")), None)
    if last_run is not None and last_run["outcome"] in BAD_OUTCOMES:
        started = bool(last_run["run_id"]) and store.run(str(last_run["run_id"])) is not None
        health.problems.append(_bad_slot(last_run, started=started))
    health.problems += _unfinished(store, workflow.name, schedule.deadline, now, slots)
    return health


def _bad_slot(slot: dict[str, Any], *, started: bool) -> str:
    run = slot["run_id"] if started else "not started"
    detail = slot["detail"] or "see `orchestr runs show`"
    return f"slot {slot['slot']} {BAD_OUTCOMES[slot['outcome']]} (run {run}): {detail}"


def _unfinished(store: Store, workflow: str, deadline: timedelta | None, now: datetime,
                slots: list[dict[str, Any]]) -> list[str]:
    """Owed slots whose run is overdue to start, or running past its deadline."""
    problems = []
    for slot in slots:
        if slot["outcome"] or slot["action"] not in ("run", "queue"):
            continue
        waited = now - parse_iso(str(slot["claimed_at"]))
        run = store.run(str(slot["run_id"])) if slot["run_id"] else None
        if run is None:
            limit = max(deadline or START_GRACE, START_GRACE) if slot["action"] == "queue" else START_GRACE
            if waited > limit:
                problems.append(f"slot {slot['slot']} was claimed {format_elapsed(waited)} ago and its run has not "
                                f"started (log: {workflow_log(store.state_dir, workflow)})")
            continue
        status = run.effective_status
        running_for = now - parse_iso(run.started_at)
        if status == "crashed":
            problems.append(f"slot {slot['slot']}: run {run.id} died without finishing (pid {run.pid} on {run.host}); "
                            "the next tick records it failed")
        elif status == "running" and deadline is not None and running_for > deadline + timedelta(minutes=1):
            problems.append(f"slot {slot['slot']}: run {run.id} has been running {format_elapsed(running_for)}, "
                            f"past its deadline of {format_elapsed(deadline)}")
    return problems
