"""`orchestr tick`: run whatever schedules are due, once each, with no daemon.

For every scheduled workflow: find the slots due since its last tick, apply the catch-up and
overlap policies, claim them in the ledger in one transaction (a unique key on workflow + slot, so
two ticks never claim the same slot), and start one detached drainer that runs the owed slots in
slot order (orchestr/scheduling/drain.py), so a slow run never delays another workflow's slot.
Each slot ends with one recorded outcome: `ran`, `skipped-overlap`, `skipped-catchup`, `failed`,
`unverified` or `timed-out`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from orchestr.errors import ValidationFailed
from orchestr.events import parse_iso
from orchestr.lock import LOCK_FD_VAR, process_start
from orchestr.models import Schedule
from orchestr.project import LoadedWorkflow, Project
from orchestr.store import Lock, LockHandover, Store, host_id

SKIP_OUTCOMES = {"skip-catchup": "skipped-catchup", "skip-overlap": "skipped-overlap"}
BACKSTOP_GRACE = timedelta(seconds=30)


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


# (project, workflow, what hands the held workflow lock over, or None: the drainer waits for it)
Launcher = Callable[[Project, str, "LockHandover | None"], "subprocess.Popen[bytes]"]


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
            problem = _schedule_problem(workflow)
            if problem is None:
                found.append(workflow)
            else:
                problems.append(problem)
    return found, problems


def _schedule_problem(workflow: LoadedWorkflow) -> str | None:
    """An invalid cron or zone: that workflow's schedule is skipped (and reported) until it is fixed."""
    from orchestr.scheduling.slots import validate_cron, validate_timezone

    schedule = workflow.spec.schedule
    assert schedule is not None
    for key, problem in (("cron", validate_cron(schedule.cron)), ("timezone", validate_timezone(schedule.timezone))):
        if problem is not None:
            return (f"{workflow.doc.span(('schedule', key))}: invalid schedule {key}: {problem}; "
                    "its slots are not run until it is fixed (see `orchestr validate`)")
    return None


def launch_drainer(project: Project, workflow: str, handover: LockHandover | None) -> subprocess.Popen[bytes]:
    """A detached `orchestr run WORKFLOW --drain` in its own session, logging under <state>/logs.

    With `handover`, the drainer takes over the workflow lock this tick holds (an inherited flock
    descriptor, or a lease's token: no instant passes in which the lock looks free); without, it
    waits for the lock (`overlap: queue`).
    """
    from orchestr.project import workflow_log
    from orchestr.store.postgres import LEASE_VAR

    log = workflow_log(project.state_dir, workflow)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in (LOCK_FD_VAR, LEASE_VAR)}
    env.update(handover.env if handover is not None else {})
    fds = handover.fds if handover is not None else ()
    argv = [sys.executable, "-m", "orchestr", "--project", str(project.root), "run", workflow,
            "--trigger", "schedule", "--drain"]
    with log.open("ab") as out:
        return subprocess.Popen(argv, cwd=project.root, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, pass_fds=fds)


def tick(project: Project, store: Store, *, now: datetime, launcher: Launcher = launch_drainer) -> TickReport:
    report = TickReport(now)
    workflows, report.problems = scheduled_workflows(project)
    idle = []
    for workflow in workflows:
        if _idle(store, workflow, now):
            idle.append(workflow.name)
        else:
            report.actions += tick_workflow(project, store, workflow, now=now, launcher=launcher, report=report)
    store.record_ticks(idle, now)
    return report


def _idle(store: Store, workflow: LoadedWorkflow, now: datetime) -> bool:
    """Nothing due and nothing owed: no lock to take, only the ledger to advance (with the others).

    Safe without the tick lock: a slot another tick claims meanwhile was due for it, not for us,
    and a slot that becomes due after this look is due at the next tick as well.
    """
    from orchestr.scheduling.policy import due_slots, ledger_start

    schedule = workflow.spec.schedule
    assert schedule is not None
    ledger = store.last_tick(workflow.name)
    last = parse_iso(ledger[1]) if ledger else None
    if ledger is None or store.owed_slots(workflow.name):
        return False
    claimed = store.claimed_slots(workflow.name, since=ledger_start(now, last))
    return not due_slots(schedule, now=now, last_tick=last, claimed=claimed)


def tick_workflow(project: Project, store: Store, workflow: LoadedWorkflow, *, now: datetime, launcher: Launcher,
                  report: TickReport) -> list[SlotAction]:
    """Decide, claim and start one workflow's due slots, holding its tick lock throughout.

    The tick lock serialises ticks of one workflow (two cron daemons, a retried timer), so each
    sees the ledger the other left; the workflow lock, taken if free, says whether a run is going
    and is handed to the drainer, so "not running" stays true until the drainer runs.
    """
    from orchestr.scheduling.drain import settle_orphans
    from orchestr.scheduling.policy import ledger_start, plan_tick

    schedule = workflow.spec.schedule
    assert schedule is not None
    name = workflow.name
    claimer = f"{host_id()}:{os.getpid()}"
    with store.lock(name, suffix="tick") as guard, store.lock(name) as lock:
        guard.acquire(claimer, wait=True)
        free = lock.try_acquire(f"tick:{claimer}")
        if free:
            settle_orphans(store, name, now=now, window=schedule.catchup_window)
        else:
            report.stopped += stop_overdue(store, lock, schedule, now)
        # A run stopped at an approval holds no process but keeps the workflow busy (approvals/).
        approvals = _approvals(store, name, now=now)
        ledger = store.last_tick(name)
        last = parse_iso(ledger[1]) if ledger else None
        claimed = store.claimed_slots(name, since=ledger_start(now, last))
        decisions = plan_tick(schedule, now=now, last_tick=last, claimed=claimed,
                              running=not free or approvals is not None)
        won = set(store.claim_slots(name, [(d.slot, d.action, SKIP_OUTCOMES.get(d.action)) for d in decisions],
                                    claimed_by=claimer, now=now))
        ours = [d for d in decisions if d.slot in won]
        pid = None
        if approvals is None or (approvals and free):  # nothing waits, or a decided run is to be resumed
            pid = _start_drainer(project, store, name, lock if free else None, launcher, report,
                                 resume=bool(approvals))
        return [SlotAction(name, d.slot, d.action, SKIP_OUTCOMES.get(d.action),
                           None if d.action in SKIP_OUTCOMES else pid) for d in ours]


def _approvals(store: Store, workflow: str, *, now: datetime) -> list[str] | None:
    """None when no run of the workflow waits for an approval; else the waiting runs ready to resume
    (decided, or timed out at the tick's `now`, which is recorded first), possibly none."""
    from orchestr.approvals.records import ApprovalBook

    if not store.waiting_runs(workflow):
        return None
    from orchestr.approvals.resume import expire_overdue, resumable_runs

    expire_overdue(ApprovalBook(store), workflow, now=now)
    ready, _ = resumable_runs(store, workflow)
    return [run.id for run in ready]


def _start_drainer(project: Project, store: Store, workflow: str, lock: Lock | None, launcher: Launcher,
                   report: TickReport, *, resume: bool = False) -> int | None:
    """One drainer when slots are owed (or a decided run is to be resumed): with our lock, or
    waiting for it (unless one already waits)."""
    from orchestr.scheduling.drain import untaken_slots

    owed = untaken_slots(store, workflow)
    if not owed and not resume:
        return None
    if lock is None and store.lock(workflow, suffix="waiter").holder() is not None:
        return None  # a drainer already waits for the lock; it serves these slots too
    try:
        process = launcher(project, workflow, lock.handover() if lock is not None else None)
    except OSError as exc:
        for row in owed:
            store.settle_slot(workflow, parse_iso(str(row["slot"])), outcome="failed", only_untaken=True,
                              detail=f"could not start the run: {exc}")
        return None
    if lock is not None:
        lock.handed_to(process.pid)
    report.processes.append(process)
    return process.pid


def stop_overdue(store: Store, lock: Lock, schedule: Schedule, now: datetime) -> list[str]:
    """A backstop for deadlines: the lock's holder, a scheduled run well past its deadline, is stopped.

    It is signalled only if it is still the very process that took the lock (pid and start time, on
    this machine), never by a bare stored pid that may since belong to another process.
    """
    holder = lock.holder()
    if schedule.deadline is None or not holder or not isinstance(holder.get("pid"), int):
        return []
    if holder.get("host", host_id()) != host_id():
        return []  # another machine's run: its own tick stops it
    run = store.run(str(holder.get("run")))
    if run is None or run.slot is None or run.status != "running":
        return []
    if parse_iso(run.started_at) + schedule.deadline + BACKSTOP_GRACE >= now:
        return []
    pid = int(str(holder["pid"]))
    if holder.get("start") is None or process_start(pid) != holder.get("start"):
        return []
    try:
        os.killpg(pid, signal.SIGTERM) if os.getpgid(pid) == pid else os.kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return []
    return [run.id]
