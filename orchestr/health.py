"""`orchestr status`: is every schedule accounted for? Non-zero when it is not, with the reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from orchestr.events import iso, parse_iso
from orchestr.project import LoadedWorkflow
from orchestr.store import Store

BAD_OUTCOMES = ("failed", "unverified", "timed-out")


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
    if settled and settled[0]["outcome"] in BAD_OUTCOMES:
        verb = {"failed": "failed", "unverified": "was unverified", "timed-out": "timed out"}[settled[0]["outcome"]]
        health.problems.append(f"the last run ({settled[0]['run_id'] or 'not started'}, slot {settled[0]['slot']}) "
                               f"{verb}: {settled[0]['detail'] or 'see orchestr runs show'}")
    health.problems += _stuck(store, workflow.name, schedule.deadline, now, slots)
    return health


def _stuck(store: Store, workflow: str, deadline: timedelta | None, now: datetime, slots: list[dict[str, object]]) -> list[str]:
    problems = []
    limit = deadline or timedelta(hours=24)
    for slot in slots:
        if slot["outcome"] or slot["action"] not in ("run", "queue"):
            continue
        claimed = parse_iso(str(slot["claimed_at"]))
        if claimed + limit + timedelta(minutes=1) >= now:
            continue
        run = store.run(str(slot["run_id"])) if slot["run_id"] else None
        state = run.effective_status if run else "never started"
        problems.append(f"slot {slot['slot']} is unfinished {now - claimed} after it was claimed (run: {state})")
    return problems
