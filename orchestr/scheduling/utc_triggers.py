"""UTC cron lines that wake a scheduler (GitHub Actions) at or just after every slot of the schedules.

GitHub evaluates `on.schedule` crons in UTC and runs nothing more often than every 5 minutes. A
workflow's cron is in its own zone, whose UTC offset changes with daylight saving time, so the
lines are derived from the slots themselves: every slot instant for a year from `start` (which
covers both DST transitions) and the weeks around the transitions of the six years after (the
week day a transition falls on moves from year to year), grouped by UTC time of day, each group restricted to the months and
week days (or days of the month) its slots fall on. The lines wake at every slot and on a few
extra days at most (a day-of-month slot that moves to the previous UTC day wakes on every such
day of the month); never every 5 minutes for schedules that need less. Pure: no clock, no I/O.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from itertools import pairwise

from orchestr.models import Schedule
from orchestr.scheduling.slots import expand, slots_between, zone

GITHUB_MINIMUM = timedelta(minutes=5)
EVERY_FIVE_MINUTES = "*/5 * * * *"
HORIZON_DAYS = 366
DAY = timedelta(days=1)
YEAR = timedelta(days=365.2425)
# Above this many slots a year a schedule fires about every 5 minutes anyway; enumerating them
# would cost seconds for no fewer wake-ups.
MAX_ENUMERATED = 60_000


def utc_crons(schedules: Sequence[Schedule], *, start: datetime) -> list[str]:
    """Sorted UTC cron lines covering every slot of `schedules` in the year after `start`."""
    if any(_estimated_slots(s.cron) > MAX_ENUMERATED for s in schedules):
        return [EVERY_FIVE_MINUTES]
    end = start + timedelta(days=HORIZON_DAYS)
    instants: set[datetime] = set()
    for schedule in schedules:
        instants.update(slots_between(schedule.cron, schedule.timezone, start, end))
        for low, high in _later_transition_weeks(schedule.timezone, start, end):
            instants.update(slots_between(schedule.cron, schedule.timezone, low, high))
    horizon = [start.date() + timedelta(days=d) for d in range(HORIZON_DAYS + 1)]
    return _compress(_at_least_five_minutes_apart(sorted(instants)), horizon)


def _later_transition_weeks(timezone: str, start: datetime, end: datetime) -> list[tuple[datetime, datetime]]:
    """The weeks around each UTC-offset change of the zone, in each of the six years after the first."""
    tz = zone(timezone)
    changes, day = [], start
    while day < end:
        if day.astimezone(tz).utcoffset() != (day + DAY).astimezone(tz).utcoffset():
            changes.append(day)
        day += DAY
    return [(change + YEAR * k - 10 * DAY, change + YEAR * k + 10 * DAY) for change in changes for k in range(1, 7)]


def _estimated_slots(cron: str) -> int:
    from croniter import croniter

    minutes, hours = croniter(expand(cron)).expanded[:2]
    return (60 if minutes == ["*"] else len(minutes)) * (24 if hours == ["*"] else len(hours)) * HORIZON_DAYS


def _at_least_five_minutes_apart(instants: list[datetime]) -> list[datetime]:
    """GitHub's limit: when two wake-ups would be closer, each moves up to the next 5-minute mark."""
    if all(b - a >= GITHUB_MINIMUM for a, b in pairwise(instants)):
        return instants
    return sorted({t + timedelta(minutes=-t.minute % 5) for t in instants})


def _compress(instants: Iterable[datetime], horizon: list[date]) -> list[str]:
    dates_at: dict[tuple[int, int], set[date]] = defaultdict(set)
    for instant in instants:
        dates_at[(instant.hour, instant.minute)].add(instant.date())
    minutes_by_days: dict[str, dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))
    for (hour, minute), dates in dates_at.items():
        minutes_by_days[_day_fields(dates, horizon)][hour].add(minute)
    lines = []
    for days, minutes_at in minutes_by_days.items():
        hours_by_minutes: dict[frozenset[int], list[int]] = defaultdict(list)
        for hour, minutes in minutes_at.items():
            hours_by_minutes[frozenset(minutes)].append(hour)
        lines += [f"{field(minutes, 0, 59)} {field(hours, 0, 23)} {days}" for minutes, hours in hours_by_minutes.items()]
    return sorted(lines)


def _cron_weekday(day: date) -> int:
    return (day.weekday() + 1) % 7  # cron: 0 is Sunday


def _day_fields(dates: set[date], horizon: list[date]) -> str:
    """The last three cron fields: by week day or by day of month, whichever wakes on fewer days."""
    months = {d.month for d in dates}
    weekdays = {_cron_weekday(d) for d in dates}
    days = {d.day for d in dates}
    by_weekday = sum(1 for d in horizon if d.month in months and _cron_weekday(d) in weekdays)
    by_day = sum(1 for d in horizon if d.month in months and d.day in days)
    month_field = field(months, 1, 12)
    if by_day < by_weekday:
        return f"{field(days, 1, 31)} {month_field} *"
    return f"* {month_field} {field(weekdays, 0, 6)}"


def field(values: Iterable[int], low: int, high: int) -> str:
    """A cron field for a set of values: `*`, `*/N`, or ranges and single values."""
    ordered = sorted(set(values))
    if ordered == list(range(low, high + 1)):
        return "*"
    step = ordered[1] - ordered[0] if len(ordered) > 2 else 0
    if step > 1 and ordered == list(range(low, high + 1, step)) and (high + 1 - low) % step == 0:
        return f"*/{step}"
    parts, run = [], [ordered[0]]
    for value in ordered[1:]:
        if value == run[-1] + 1:
            run.append(value)
            continue
        parts.append(_run(run))
        run = [value]
    parts.append(_run(run))
    return ",".join(parts)


def _run(values: list[int]) -> str:
    if len(values) >= 3:
        return f"{values[0]}-{values[-1]}"
    return ",".join(map(str, values))
