"""`orchestr tick`: run whatever schedules are due, once each, with no daemon.

For every scheduled workflow: find the slots due since its last tick, claim each one atomically in
the ledger (a unique key on workflow + slot, so two ticks never run the same slot), apply the
catch-up and overlap policies, and start the runs as detached processes so a slow run never delays
another workflow's slot. Each slot ends with one recorded outcome: `ran`, `skipped-overlap`,
`skipped-catchup`, `failed`, `unverified` or `timed-out`.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from orchestr.errors import Busy, OrchestrError, ValidationFailed
from orchestr.events import iso, parse_iso
from orchestr.lock import WorkflowLock
from orchestr.models import Schedule
from orchestr.project import LoadedWorkflow, Project
from orchestr.store import Store

OUTCOME_BY_STATUS = {"succeeded": "ran", "failed": "failed", "unverified": "unverified", "cancelled": "failed",
                     "timed-out": "timed-out"}


@dataclass(frozen=True)
class SlotAction:
    workflow: str
    slot: datetime
    action: str  # run | queue | skip-catchup | skip-overlap
    outcome: str | None = None
    pid: int | None = None


@dataclass
class TickReport:
    now: datetime
    actions: list[SlotAction] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)


Launcher = Callable[[Project, str, datetime, bool], "subprocess.Popen[bytes]"]


def scheduled_workflows(project: Project) -> tuple[list[LoadedWorkflow], list[str]]:
    """Every workflow with a schedule; unreadable files are reported, not fatal to the others."""
    found: list[LoadedWorkflow] = []
    seen: dict[str, LoadedWorkflow] = {}
    problems: list[str] = []
    for path in project.workflow_files():
        try:
            workflow = project.load_workflow(path)
        except ValidationFailed as exc:
            problems.append(exc.format())
            continue
        twin = seen.setdefault(workflow.name, workflow)
        if twin is not workflow:  # one name, one ledger and one lock: the second would share them
            problems.append(f"{workflow.display}: workflow name '{workflow.name}' is also used by {twin.display}; "
                            "its schedule is skipped until one is renamed (see `orchestr validate`)")
        elif workflow.spec.schedule is not None:
            found.append(workflow)
    return found, problems


def launch_run(project: Project, workflow: str, slot: datetime, queue: bool) -> subprocess.Popen[bytes]:
    """A detached `orchestr run` for one slot, in its own session, logging under .orchestr/logs."""
    logs = project.state_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = (logs / f"{workflow}.log").open("ab")
    argv = [sys.executable, "-m", "orchestr", "--project", str(project.root), "run", workflow,
            "--trigger", "schedule", "--slot", iso(slot)]
    if queue:
        argv.append("--queue")
    try:
        return subprocess.Popen(argv, cwd=project.root, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()


def tick(project: Project, store: Store, *, now: datetime, launcher: Launcher = launch_run) -> TickReport:
    from orchestr.scheduling.policy import ledger_start, plan_tick

    report = TickReport(now)
    workflows, report.problems = scheduled_workflows(project)
    claimer = f"{socket.gethostname()}:{os.getpid()}"
    for workflow in workflows:
        schedule = workflow.spec.schedule
        assert schedule is not None
        report.stopped += stop_overdue(store, workflow.name, schedule, now)
        reconcile(store, workflow.name)
        ledger = store.last_tick(workflow.name)
        last = parse_iso(ledger[1]) if ledger else None
        claimed = store.claimed_slots(workflow.name, since=ledger_start(now, last))
        running = WorkflowLock(project.state_dir, workflow.name).holder() is not None
        for decision in plan_tick(schedule, now=now, last_tick=last, claimed=claimed, running=running):
            if not store.claim_slot(workflow.name, decision.slot, action=decision.action, claimed_by=claimer):
                continue  # another tick claimed it first
            report.actions.append(_act(project, store, workflow.name, decision.slot, decision.action, launcher, report))
        store.record_tick(workflow.name, now)
    return report


def _act(project: Project, store: Store, workflow: str, slot: datetime, action: str, launcher: Launcher,
         report: TickReport) -> SlotAction:
    if action in ("skip-catchup", "skip-overlap"):
        outcome = "skipped-catchup" if action == "skip-catchup" else "skipped-overlap"
        store.settle_slot(workflow, slot, outcome=outcome)
        return SlotAction(workflow, slot, action, outcome)
    try:
        process = launcher(project, workflow, slot, action == "queue")
    except OSError as exc:
        store.settle_slot(workflow, slot, outcome="failed", detail=f"could not start the run: {exc}")
        return SlotAction(workflow, slot, action, "failed")
    report.processes.append(process)
    return SlotAction(workflow, slot, action, None, process.pid)


def stop_overdue(store: Store, workflow: str, schedule: Schedule, now: datetime) -> list[str]:
    """A backstop for deadlines: a scheduled run still alive past its deadline is stopped."""
    if schedule.deadline is None:
        return []
    stopped = []
    for run in store.runs(workflow=workflow, limit=20):
        if run.effective_status != "running" or run.slot is None:
            continue
        if parse_iso(run.started_at) + schedule.deadline + timedelta(seconds=30) < now and run.pid:
            try:
                os.killpg(run.pid, signal.SIGTERM)
            except (ProcessLookupError, PermissionError):
                continue
            stopped.append(run.id)
    return stopped


def settle_unstarted(project: Project, workflow: str, slot: str, error: OrchestrError) -> None:
    """A scheduled run that could not start (invalid workflow, busy) still settles its slot."""
    outcome = "skipped-overlap" if isinstance(error, Busy) else "failed"
    store = Store(project.state_dir)
    try:
        store.settle_slot(workflow, parse_iso(slot), outcome=outcome,
                          detail=error.format()[:2000])
    finally:
        store.close()


def reconcile(store: Store, workflow: str) -> list[str]:
    """Slots whose run died without settling them (kill -9, power loss) are recorded `failed`."""
    settled = []
    for slot in store.unsettled_slots(workflow):
        if not slot["run_id"]:
            continue
        run = store.run(str(slot["run_id"]))
        if run is not None and run.effective_status == "crashed":
            store.settle_slot(workflow, parse_iso(str(slot["slot"])), outcome="failed",
                              detail=f"run {run.id} died without finishing (pid {run.pid})")
            settled.append(str(slot["slot"]))
    return settled


def slot_outcome(status: str) -> str:
    return OUTCOME_BY_STATUS.get(status, "failed")


def log_path(project: Project, workflow: str) -> Path:
    return project.state_dir / "logs" / f"{workflow}.log"
