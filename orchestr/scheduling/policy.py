"""What one tick does with each due slot: the catch-up and overlap policies, as pure functions.

A slot is *due* once its instant has passed and no earlier tick claimed it. The ledger starts at
the minute of a schedule's first tick: slots before it are not owed. Then, per due slot:

- older than `catchup_window`: `skip-catchup` (owed no more);
- `catchup: all`: every slot in the window runs, one after another (later ones `queue`);
  `latest`: only the newest runs; `none`: only a slot that is on time (its tick came within
  ON_TIME) runs. The rest: `skip-catchup`;
- a slot that would run while a run of the workflow is going: `skip-overlap` with `overlap:
  skip`, `queue` (wait for it to finish) with `overlap: queue`.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from orchestr.models import Schedule
from orchestr.scheduling.slots import floor_minute, slots_between

Action = Literal["run", "queue", "skip-catchup", "skip-overlap"]
ON_TIME = timedelta(minutes=5)
# A tick after a long outage records at most this many slots (the newest); older ones are
# beyond any sensible catch-up window and would only bloat the ledger.
MAX_SLOTS_PER_TICK = 5000


@dataclass(frozen=True)
class SlotDecision:
    slot: datetime
    action: Action


def ledger_start(now: datetime, last_tick: datetime | None) -> datetime:
    """Slots after this instant are owed: the last tick, or the minute of the first one."""
    if last_tick is not None:
        return last_tick
    return floor_minute(now) - timedelta(microseconds=1)


def due_slots(schedule: Schedule, *, now: datetime, last_tick: datetime | None,
              claimed: Collection[datetime] = ()) -> list[datetime]:
    found = slots_between(schedule.cron, schedule.timezone, ledger_start(now, last_tick), now)
    return [s for s in found if s not in claimed][-MAX_SLOTS_PER_TICK:]


def _to_run(schedule: Schedule, owed: list[datetime], now: datetime) -> list[datetime]:
    if schedule.catchup == "all":
        return owed
    if schedule.catchup == "latest":
        return owed[-1:]
    return [s for s in owed if now - s <= ON_TIME][-1:]


def plan_tick(schedule: Schedule, *, now: datetime, last_tick: datetime | None,
              claimed: Collection[datetime], running: bool) -> list[SlotDecision]:
    """One decision per due slot, oldest first."""
    due = due_slots(schedule, now=now, last_tick=last_tick, claimed=claimed)
    owed = [s for s in due if now - s <= schedule.catchup_window]
    runs = set(_to_run(schedule, owed, now))
    decisions: list[SlotDecision] = []
    started = running
    for slot in due:
        if slot not in runs:
            decisions.append(SlotDecision(slot, "skip-catchup"))
        elif not started:
            decisions.append(SlotDecision(slot, "run"))
            started = True
        elif running and schedule.overlap == "skip":
            decisions.append(SlotDecision(slot, "skip-overlap"))
        else:
            decisions.append(SlotDecision(slot, "queue"))
    return decisions


def missed_slots(schedule: Schedule, *, now: datetime, last_tick: datetime, grace: timedelta) -> list[datetime]:
    """Slots that passed more than `grace` ago with no tick after them: the scheduler is down."""
    return slots_between(schedule.cron, schedule.timezone, last_tick, now - grace)
