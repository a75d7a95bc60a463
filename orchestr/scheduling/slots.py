"""Cron slots as UTC instants, with the DST rules of Debian cron for fixed-time jobs.

Slots are found by matching the cron expression against *local wall-clock* times (croniter on
naive datetimes, where no time zone can get in the way), then each local time is placed on the
UTC time line:

- a local time that does not exist (skipped by a spring-forward gap) runs once, right after the
  gap, at the instant the clocks jump;
- a local time that happens twice (a fall-back hour) runs once, at its first occurrence;
- slots landing on the same instant are one slot.

A slot is identified by its UTC instant; that instant is the ledger's key.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ALIASES = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
FIELDS = (("minute", "0-59"), ("hour", "0-23"), ("day-of-month", "1-31"), ("month", "1-12 or JAN-DEC"),
          ("day-of-week", "0-7 or SUN-SAT"))
# Wide enough for every DST shift in the tz database (at most 2 hours).
DST_MARGIN = timedelta(hours=3)
MINUTE = timedelta(minutes=1)


def expand(expr: str) -> str:
    """The 5-field form of an expression (aliases expanded, whitespace normalised)."""
    text = " ".join(expr.split())
    return ALIASES.get(text.lower(), text)


def validate_cron(expr: str) -> str | None:
    """None when `expr` is a valid 5-field cron expression or alias, else what is wrong."""
    from croniter import CroniterError, croniter

    text = expand(expr)
    if text.startswith("@"):
        return f"unknown alias '{text}' (use one of {', '.join(ALIASES)})"
    fields = text.split(" ")
    if len(fields) != 5:
        return f"expected 5 fields (minute hour day-of-month month day-of-week), got {len(fields)}"
    for i, (name, allowed) in enumerate(FIELDS):
        probe = ["*"] * 5
        probe[i] = fields[i]
        if not croniter.is_valid(" ".join(probe)):
            return f"the {name} field '{fields[i]}' is out of range or malformed ({name}: {allowed})"
    if not croniter.is_valid(text):
        return "the fields do not combine into a valid expression"
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterError:
        return "it never matches a real date (e.g. February 30th)"
    return None


def validate_timezone(name: str) -> str | None:
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: 'Europe' is a folder of zones
        return f"unknown time zone '{name}'"
    return None


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _local(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def place(local: datetime, tz: ZoneInfo) -> datetime:
    """The UTC instant of a local wall-clock time, by the rules in the module docstring."""
    first = local.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _local(first, tz) == local:
        return first
    # The local time falls in a gap: find the first instant whose wall clock is past it.
    low = local.replace(tzinfo=tz, fold=1).astimezone(UTC)
    high = first
    while high - low > MINUTE:
        middle = low + (high - low) / 2
        middle = middle.replace(second=0, microsecond=0)
        if middle <= low:
            break
        if _local(middle, tz) > local:
            high = middle
        else:
            low = middle
    return high


def _local_matches(expr: str, start: datetime, end: datetime) -> Iterator[datetime]:
    """Naive local times matching `expr` in (start, end]."""
    from croniter import croniter

    it = croniter(expand(expr), start)
    while True:
        found: datetime = it.get_next(datetime)
        if found > end:
            return
        yield found


def _shifts(tz: ZoneInfo, start: datetime, end: datetime) -> bool:
    """Does the zone's UTC offset change anywhere near [start, end]?"""
    probe = start - DST_MARGIN
    offsets = set()
    while probe <= end + DST_MARGIN:
        offsets.add(probe.astimezone(tz).utcoffset())
        probe += timedelta(hours=1)
    offsets.add((end + DST_MARGIN).astimezone(tz).utcoffset())
    return len(offsets) > 1


def slots_between(expr: str, timezone: str, start: datetime, end: datetime) -> list[datetime]:
    """Slot instants (UTC) in the half-open interval (start, end], in order."""
    tz = zone(timezone)
    if end <= start:
        return []
    margin = DST_MARGIN if _shifts(tz, start, end) else timedelta(0)
    local_start = _local(start - margin, tz)
    local_end = _local(end + margin, tz)
    instants = {place(local, tz) for local in _local_matches(expr, local_start, local_end)}
    return sorted(i for i in instants if start < i <= end)


def next_slots(expr: str, timezone: str, now: datetime, count: int) -> list[datetime]:
    """The next `count` slot instants strictly after `now`."""
    found: list[datetime] = []
    window = timedelta(days=1)
    start = now
    for _ in range(600):  # a yearly schedule needs a few hundred windows at most
        if len(found) >= count:
            break
        found += slots_between(expr, timezone, start, start + window)
        start, window = start + window, min(window * 2, timedelta(days=64))
    return found[:count]


def floor_minute(instant: datetime) -> datetime:
    return instant.replace(second=0, microsecond=0)
