"""The drainer process (`orchestr run WORKFLOW --drain`): the composition of drain.py with real runs.

Each owed slot is compiled afresh (the files may have changed since the tick) and run in this
process, one after another. Anything that stops a run from starting (an invalid workflow, a
missing API key or `env_from` variable, a required input, an unwritable state folder) settles the
slot `failed` with the reason, so `orchestr status` shows it at once.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from orchestr.errors import ExitCode, NotWaiting, OrchestrError
from orchestr.events import EventSink, LogSink, Redactor, iso, utc_now
from orchestr.project import Project, workflow_log
from orchestr.scheduling.drain import SlotResult, drain, wait_for_turn
from orchestr.steps.base import StepRunner
from orchestr.store import Lock, RunRow, Store, open_store

if TYPE_CHECKING:
    from orchestr.runner import RunControl

Sinks = Callable[[], tuple[Sequence[EventSink], Sequence[LogSink]]]


def serve_workflow(project: Project, workflow: str, *, sinks: Sinks, env: Mapping[str, str],
                   say: Callable[[str], None], control: RunControl | None = None) -> int:
    """Serve every owed slot of `workflow`; the exit code is 1 if any of them did not succeed."""
    from orchestr.runner import new_run_id

    deadline = _deadline(project, workflow)
    store = open_store(project)
    lock = store.lock(workflow)
    waiter_id = f"waiter:{os.getpid()}"
    try:
        if not lock.adopt_from(env, "drainer") and not wait_for_turn(store, lock, workflow, deadline=deadline, clock=utc_now, waiter_id=waiter_id):
            return ExitCode.OK  # another process served (or is serving) every owed slot

        resumed = _resume_decided(project, store, lock, workflow, sinks=sinks, env=env, say=say)
        if resumed is None:
            return ExitCode.OK  # a run waits for a person: the owed slots wait with it

        def serve(slot_at: datetime, run_id: str) -> SlotResult:
            return serve_slot(project, store, lock, workflow, slot=slot_at, run_id=run_id, sinks=sinks,
                              env=env, say=say, control=control)

        results = [*resumed, *drain(store, lock, workflow, serve=serve, new_run_id=lambda: new_run_id(utc_now()))]
    finally:
        lock.release()
        store.close()
    if any(r.stop for r in results):
        return ExitCode.CANCELLED
    return ExitCode.OK if all(r.outcome in ("ran", "waiting") for r in results) else ExitCode.FAILED


def _resume_decided(project: Project, store: Store, lock: Lock, workflow: str, *, sinks: Sinks,
                    env: Mapping[str, str], say: Callable[[str], None]) -> list[SlotResult] | None:
    """Resume the runs whose approval was decided; None when a run still waits (the drain stops).

    A run stopped at an approval keeps the workflow busy (docs/approvals.md), so slots are served
    only once no run waits any more.
    """
    from orchestr.approvals.resume import resumable_runs, resume_run
    from orchestr.events import parse_iso
    from orchestr.runner import slot_outcome

    ready, blocked = resumable_runs(store, workflow)
    results = []
    for run in ready:
        say(f"--- {iso(utc_now())} {workflow}: resuming run {run.id} after its approval was decided")
        event_sinks, log_sinks = sinks()
        try:
            result = resume_run(project, run, sinks=event_sinks, log_sinks=log_sinks, env=env, lock=lock, warn=say)
        except NotWaiting:
            continue  # someone else resumed it meanwhile
        except OrchestrError as exc:  # e.g. the workflow is invalid now: the run ends, it cannot wait forever
            results.append(_unresumable(project, store, run, exc.format(), say))
            continue
        outcome = slot_outcome(result.outcome.status)
        say(f"--- {workflow}: run {run.id} {outcome} (exit {int(result.outcome.exit_code)})")
        slot = parse_iso(run.slot) if run.slot else utc_now()
        results.append(SlotResult(slot, outcome, int(result.outcome.exit_code), stop=result.outcome.status == "cancelled"))
    if blocked or any(r.holds_workflow for r in results):
        return None
    return results


def _deadline(project: Project, workflow: str) -> timedelta | None:
    try:
        schedule = project.find_workflow(workflow).spec.schedule
    except OrchestrError:
        return None  # each slot will say why it cannot start
    return schedule.deadline if schedule is not None else None


def serve_slot(project: Project, store: Store, lock: Lock, workflow: str, *, slot: datetime, run_id: str,
               sinks: Sinks, env: Mapping[str, str], say: Callable[[str], None],
               control: RunControl | None = None) -> SlotResult:
    from orchestr.compiler import compile_workflow
    from orchestr.review.lockfile import guard_run
    from orchestr.runner import (
        RunRequest,
        close_runners,
        execute,
        runners_for,
        schedule_deadline,
        slot_outcome,
    )

    say(f"--- {iso(utc_now())} {workflow}: slot {iso(slot)}, run {run_id}")
    runners: Mapping[str, StepRunner] = {}
    try:
        fresh = Project(project.root)  # the files may have changed since the tick
        plan = compile_workflow(fresh.find_workflow(workflow), fresh.tree, fresh.config)
        guard_run(fresh, plan, warn=say)  # a stale orchestr.lock: a warning, or a refusal with `lock: required`
        runners = runners_for(plan, env=env)
        request = RunRequest(trigger="schedule", slot=iso(slot), deadline=schedule_deadline(plan), env=env,
                             control=control, say=say)
        event_sinks, log_sinks = sinks()
        result = execute(fresh, plan, request, runners=runners, sinks=event_sinks, log_sinks=log_sinks,
                         run_id=run_id, lock=lock)
    except OrchestrError as exc:
        return _not_started(project, store, workflow, slot, exc.format(), int(exc.exit_code), env, say)
    except KeyboardInterrupt:
        store.settle_slot(workflow, slot, outcome="failed", detail="the drainer was stopped before the run started")
        return SlotResult(slot, "failed", ExitCode.CANCELLED, stop=True)
    except Exception as exc:  # a bug: the slot still gets its outcome, and the log the traceback
        import traceback

        say(traceback.format_exc())
        return _not_started(project, store, workflow, slot, f"internal error: {exc!r}", ExitCode.FAILED, env, say)
    finally:
        close_runners(runners)
    outcome = result.outcome
    say(f"--- {workflow}: slot {iso(slot)} {slot_outcome(outcome.status)} (exit {int(outcome.exit_code)})")
    return SlotResult(slot, slot_outcome(outcome.status), int(outcome.exit_code), stop=outcome.status == "cancelled")


def _unresumable(project: Project, store: Store, run: RunRow, why: str, say: Callable[[str], None]) -> SlotResult:
    """A decided run that cannot be resumed ends `failed`, and its slot with it (fail closed)."""
    from orchestr.events import parse_iso

    detail = f"run {run.id} could not be resumed after its approval: {why}"[:2000]
    say(f"error: {detail}")
    store.finish_run(run.id, status="failed", exit_code=ExitCode.FAILED, error=detail, tokens=run.tokens)
    slot = parse_iso(run.slot) if run.slot else utc_now()
    if run.slot:
        store.settle_slot(run.workflow, slot, outcome="failed", run_id=run.id,
                          detail=f"{detail} (log: {_shown(workflow_log(project.state_dir, run.workflow), project.root)})")
    return SlotResult(slot, "failed", ExitCode.FAILED)


def _not_started(project: Project, store: Store, workflow: str, slot: datetime, why: str, code: int,
                 env: Mapping[str, str], say: Callable[[str], None]) -> SlotResult:
    from orchestr.runner import PROVIDER_KEY_VARS, secret_values

    try:  # the project's secrets (orchestr.yaml, provider keys, env_from); the plan never compiled
        redact = Redactor(secret_values(project, None, env))
    except OrchestrError:
        redact = Redactor([env[n] for n in PROVIDER_KEY_VARS if env.get(n)])
    detail = f"the run could not start: {redact.text(why)}"
    say(f"error: {detail}")
    store.settle_slot(workflow, slot, outcome="failed",
                      detail=f"{detail[:2000]} (log: {_shown(workflow_log(project.state_dir, workflow), project.root)})")
    return SlotResult(slot, "failed", code)


def _shown(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)

