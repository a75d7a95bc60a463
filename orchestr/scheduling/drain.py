"""Serving a workflow's owed slots: one process, holding the workflow's lock, oldest slot first.

`orchestr tick` claims slots and starts one *drainer* (`orchestr run WORKFLOW --drain`). The
drainer holds the workflow lock (handed over by the tick, or waited for when a run is going and
the policy is `overlap: queue`) and runs every owed slot in slot order, each as one run, each
settled with exactly one outcome. One runner draining a queue, rather than one process per slot
racing for the lock, is what makes "every owed slot runs, in order" true.

Whoever holds the lock is the only one that can be serving a slot, so it is also the one that
settles what a dead process left (`settle_orphans`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from orchestr.events import parse_iso
from orchestr.lock import POLL_SECONDS
from orchestr.store import Lock, Store

Clock = Callable[[], datetime]


@dataclass(frozen=True)
class SlotResult:
    slot: datetime
    outcome: str  # ran | failed | unverified | timed-out | waiting (stopped at an approval; not settled yet)
    exit_code: int
    stop: bool = False  # the drainer was told to stop (SIGTERM, Ctrl-C): the rest wait for a tick

    @property
    def holds_workflow(self) -> bool:
        """The drain stops here: told to, or the run waits for an approval (the workflow stays busy)."""
        return self.stop or self.outcome == "waiting"


SlotServer = Callable[[datetime, str], SlotResult]  # (slot, run id) -> how it went; settles the slot


def run_outcome_of(status: str) -> str:
    from orchestr.runner import slot_outcome

    return slot_outcome(status)


def untaken_slots(store: Store, workflow: str) -> list[dict[str, Any]]:
    """Owed slots no run has taken yet, oldest first: what a drainer is still to serve."""
    return [r for r in store.owed_slots(workflow) if not r["run_id"]]


def settle_orphans(store: Store, workflow: str, *, now: datetime, window: timedelta | None) -> list[str]:
    """Settle the owed slots a dead process left. Call only while holding the workflow's lock.

    A slot bound to a run that is not running gets that run's outcome (`failed` if it died); an
    unbound one is still owed, unless it is older than `window` (the catch-up window: the tick
    passes it, with the tick's clock).
    """
    settled = []
    for row in store.owed_slots(workflow):
        slot, run_id = parse_iso(str(row["slot"])), row["run_id"]
        if run_id:
            run = store.run(str(run_id))
            if run is not None and run.status == "waiting":
                continue  # stopped at an approval: its slot settles when the resumed run ends
            if run is not None and run.status != "running":  # finished (e.g. resumed by hand)
                store.settle_slot(workflow, slot, outcome=run_outcome_of(run.status), detail=run.error)
            else:
                where = f" (pid {run.pid} on {run.host})" if run is not None else ""
                store.settle_slot(workflow, slot, outcome="failed",
                                  detail=f"run {run_id} died without finishing{where}")
        elif window is not None and now - slot > window:
            store.settle_slot(workflow, slot, outcome="failed",
                              detail="its run never started: the process that claimed it ended first")
        else:
            continue  # still owed: the drainer runs it
        settled.append(str(row["slot"]))
    return settled


def drain(store: Store, lock: Lock, workflow: str, *, serve: SlotServer,
          new_run_id: Callable[[], str]) -> list[SlotResult]:
    """Run every owed slot, oldest first, until none is left (slots claimed meanwhile included)."""
    assert lock.held
    settle_orphans(store, workflow, now=datetime.min, window=None)
    results: list[SlotResult] = []
    while True:
        owed = untaken_slots(store, workflow)
        if not owed:
            return results
        slot, run_id = parse_iso(str(owed[0]["slot"])), new_run_id()
        if not store.take_slot(workflow, slot, run_id):
            continue
        result = serve(slot, run_id)
        results.append(result)
        if result.holds_workflow:
            return results


def wait_for_turn(store: Store, lock: Lock, workflow: str, *, deadline: timedelta | None,
                  clock: Clock, waiter_id: str, sleep: Callable[[float], None] = time.sleep) -> bool:
    """`overlap: queue`: wait for the running run to end, then hold the lock (True).

    One waiter per workflow (a second one leaves at once: the first serves every owed slot). While
    waiting, a queued slot whose wait passes the schedule's deadline is settled `timed-out`; when
    nothing is owed any more (the holder served it all), the wait ends without the lock (False).
    """
    waiter = store.lock(workflow, suffix="waiter")
    if not waiter.try_acquire(waiter_id):
        return False
    try:
        while not lock.try_acquire(waiter_id):
            owed = untaken_slots(store, workflow)
            if not owed:
                return False
            if deadline is not None:
                _expire_waits(store, workflow, owed, deadline=deadline, now=clock(), holder=lock.holder() or {})
            sleep(POLL_SECONDS * 2)
        return True
    finally:
        waiter.release()


def _expire_waits(store: Store, workflow: str, owed: list[dict[str, object]], *, deadline: timedelta,
                  now: datetime, holder: dict[str, object]) -> None:
    from orchestr.health import format_elapsed

    for row in owed:
        waited = now - parse_iso(str(row["claimed_at"]))
        if waited > deadline:
            store.settle_slot(workflow, parse_iso(str(row["slot"])), outcome="timed-out", only_untaken=True,
                              detail=f"waited {format_elapsed(waited)} for run {holder.get('run', '?')} to finish, "
                                     f"past the schedule's deadline ({format_elapsed(deadline)}); it never started")
