"""Resuming a run after its approval was decided: from `approve` (foreground or detached) or from
the next `tick` (a scheduled run whose approver did not resume it, or whose approval timed out).

Every path goes through `orchestr run --resume`'s machinery (orchestr/runner.py): verified steps
are kept, and the workflow's lock is taken first; `only_if_waiting` makes the loser of a race
between two resumers (an approver and a tick) stop without running anything twice.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path

from orchestr.approvals.records import ApprovalBook
from orchestr.events import EventSink, LogSink
from orchestr.project import Project
from orchestr.runner import RunResult
from orchestr.store import Lock, RunRow, Store


def expire_overdue(book: ApprovalBook, workflow: str, *, now: datetime) -> list[str]:
    """Record `timed-out` for every unanswered request past its timeout at `now` (the tick's clock)."""
    expired = []
    for record in book.open(workflow=workflow):
        if record.expired(now) and book.decide(record, decision="timed-out", by="orchestr tick",
                                               comment="no decision before the timeout", now=now):
            expired.append(f"{record.run_id}/{record.step_id}")
    return expired


def resumable_runs(store: Store, workflow: str) -> tuple[list[RunRow], bool]:
    """(waiting runs with a decision to act on, whether some waiting run still waits for a person)."""
    book = ApprovalBook(store)
    decided: set[str] = set()
    undecided: set[str] = set()
    for record in book.open(workflow=workflow):
        (decided if record.decision is not None else undecided).add(record.run_id)
    runs = store.waiting_runs(workflow)
    ready = [r for r in runs if r.id in decided]
    blocked = any(r.id not in decided for r in runs)
    return ready, blocked


def resume_run(project: Project, run: RunRow, *, sinks: Sequence[EventSink] = (), log_sinks: Sequence[LogSink] = (),
               env: Mapping[str, str] | None = None, lock: Lock | None = None,
               warn: Callable[[str], None] = lambda line: None) -> RunResult:
    """Resume a waiting run in this process, with the options it was started with."""
    from orchestr.compiler import compile_workflow
    from orchestr.review.lockfile import guard_run
    from orchestr.runner import RunRequest, close_runners, execute, runners_for

    env = dict(os.environ) if env is None else env
    fresh = Project(project.root)
    plan = compile_workflow(fresh.find_workflow(run.workflow), fresh.tree, fresh.config)
    guard_run(fresh, plan, warn=warn)
    options = run.options
    replay = Path(options["replay"]) if options.get("replay") else None
    attach = [Path(p) for p in options.get("attach") or []]
    allow = list(options.get("allow") or [])
    runners = runners_for(plan, replay=replay, attach=attach, allow=allow, env=env)
    request = RunRequest(resume=run.id, trigger=run.trigger, queue=True, only_if_waiting=True, env=env,
                         max_parallel=options.get("max_parallel"), replay=replay, attach=attach, allow=allow)
    try:
        return execute(fresh, plan, request, runners=runners, sinks=sinks, log_sinks=log_sinks, lock=lock)
    finally:
        close_runners(runners)


def launch_resume(project: Project, run: RunRow) -> subprocess.Popen[bytes]:
    """`approve --detach`: the resume in its own session, appending to the workflow's log."""
    from orchestr.project import workflow_log

    log = workflow_log(project.state_dir, run.workflow)
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "orchestr", "--project", str(project.root), "approvals", "resume", run.id]
    with log.open("ab") as out:
        return subprocess.Popen(argv, cwd=project.root, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
