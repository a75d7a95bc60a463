"""Cron slots, DST rules and the tick's catch-up and overlap policy, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from cronsim import CronSim

from orchestr.models import Schedule
from orchestr.scheduling.policy import ON_TIME, SlotDecision, missed_slots, plan_tick
from orchestr.scheduling.slots import next_slots, slots_between, validate_cron, validate_timezone

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local(zone: str, *args: int, fold: int = 0) -> datetime:
    return datetime(*args, tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)


@pytest.mark.parametrize(("expr", "problem"), [
    ("*/15 8-18 * * 1-5", None),
    ("@hourly", None),
    ("@DAILY", None),
    ("* * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 3"),
    ("0 0 * * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 6"),
    ("61 * * * *", "the minute field '61' is out of range or malformed (minute: 0-59)"),
    ("0 8 * * MON-FRY", "the day-of-week field 'MON-FRY' is out of range or malformed (day-of-week: 0-7 or SUN-SAT)"),
    ("@often", "unknown alias '@often' (use one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly)"),
    ("0 0 30 2 *", "it never matches a real date (e.g. February 30th)"),
])
def test_validate_cron(expr: str, problem: str | None) -> None:
    assert validate_cron(expr) == problem


def test_validate_timezone() -> None:
    assert validate_timezone("America/New_York") is None
    assert validate_timezone("Mars/Olympus") == "unknown time zone 'Mars/Olympus'"
    assert validate_timezone("../../etc/passwd") == "unknown time zone '../../etc/passwd'"


def test_a_slot_in_the_skipped_hour_runs_once_right_after_the_gap() -> None:
    # Berlin skips 02:00-03:00 local on 2026-03-29: the 02:30 slot runs at 03:00 CEST.
    found = slots_between("30 2 * * *", "Europe/Berlin", utc(2026, 3, 28), utc(2026, 3, 31))
    assert found == [local("Europe/Berlin", 2026, 3, 28, 2, 30), local("Europe/Berlin", 2026, 3, 29, 3, 0),
                     local("Europe/Berlin", 2026, 3, 30, 2, 30)]


def test_skipped_slots_of_a_wildcard_job_collapse_into_one_run_after_the_gap() -> None:
    found = slots_between("*/20 * * * *", "Europe/Berlin", utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1, 30))
    shown = [s.astimezone(BERLIN).strftime("%H:%M%z") for s in found]
    assert shown == ["01:40+0100", "03:00+0200", "03:20+0200"]


def test_a_slot_in_the_repeated_hour_runs_once_at_its_first_occurrence() -> None:
    found = slots_between("30 2 * * *", "Europe/Berlin", utc(2026, 10, 24), utc(2026, 10, 27))
    assert local("Europe/Berlin", 2026, 10, 25, 2, 30, fold=0) in found
    assert local("Europe/Berlin", 2026, 10, 25, 2, 30, fold=1) not in found
    assert len(found) == 3
    hourly = slots_between("0 * * * *", "Europe/Berlin", utc(2026, 10, 24, 22), utc(2026, 10, 25, 4))
    assert [s.astimezone(BERLIN).strftime("%H%z") for s in hourly] == [
        "01+0200", "02+0200", "03+0100", "04+0100", "05+0100"]  # 02:00 +01:00 is the repeat


def test_next_slots_are_after_now_with_offsets() -> None:
    now = utc(2026, 11, 24, 8, 7)
    found = next_slots("*/15 8-18 * * 1-5", "Europe/Berlin", now, 3)
    assert [s.astimezone(BERLIN).isoformat() for s in found] == [
        "2026-11-24T09:15:00+01:00", "2026-11-24T09:30:00+01:00", "2026-11-24T09:45:00+01:00"]
    assert next_slots("0 0 29 2 *", "UTC", now, 2) == [utc(2028, 2, 29), utc(2032, 2, 29)]


# --- cross-check against an independent implementation -------------------------------------------

ZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Asia/Kolkata"]
FIXED_TIME = ["30 2 * * *", "0 1,2,3 * * *", "15 2 * * 0", "45 23 * * *", "0 0 1 * *"]
WILDCARD = ["*/30 * * * *", "5 * * * *", "*/20 2 * * *"]


def _cronsim(expr: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    found = []
    for value in CronSim(expr, start.astimezone(ZoneInfo(zone))):
        instant = value.astimezone(UTC)
        if instant > end:
            return found
        found.append(instant)
    return found


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("expr", FIXED_TIME)
def test_fixed_time_slots_match_cronsim_over_a_year(zone: str, expr: str) -> None:
    start, end = utc(2026, 1, 1), utc(2027, 1, 1)
    assert slots_between(expr, zone, start, end) == _cronsim(expr, zone, start, end)


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("expr", WILDCARD)
def test_wildcard_slots_match_cronsim_except_the_documented_dst_rules(zone: str, expr: str) -> None:
    """cronsim follows Debian for wildcard jobs: a repeated local hour runs twice and a skipped one
    not at all. orchestr runs every local slot exactly once: the second occurrence is dropped and
    skipped slots run at the end of the gap. Nothing else may differ."""
    tz = ZoneInfo(zone)
    start, end = utc(2026, 1, 1), utc(2027, 1, 1)
    ours, theirs = set(slots_between(expr, zone, start, end)), set(_cronsim(expr, zone, start, end))
    for extra in theirs - ours:
        wall = extra.astimezone(tz).replace(tzinfo=None)
        first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
        assert first != extra and first in ours, f"orchestr dropped {extra} which is not a repeat"
    for extra in ours - theirs:
        before = (extra - timedelta(seconds=1)).astimezone(tz).utcoffset()
        gap_end = before != extra.astimezone(tz).utcoffset()
        assert gap_end or _genuine_first_occurrence(expr, tz, extra), f"orchestr added {extra}"


def _genuine_first_occurrence(expr: str, tz: ZoneInfo, instant: datetime) -> bool:
    """A slot cronsim misses (it skips 02:00 on Lord Howe's half-hour fall-back day, where that
    local time happens once): the wall time matches and this is its first occurrence."""
    wall = instant.astimezone(tz).replace(tzinfo=None)
    return croniter.match(expr, wall) and wall.replace(tzinfo=tz, fold=0).astimezone(UTC) == instant


# --- the policy ---------------------------------------------------------------------------------


def schedule(**overrides: object) -> Schedule:
    return Schedule.model_validate({"cron": "*/15 * * * *", "timezone": "UTC", **overrides})


def actions(decisions: list[SlotDecision]) -> list[tuple[str, str]]:
    return [(d.slot.strftime("%H:%M"), d.action) for d in decisions]


def test_the_first_tick_owes_only_its_own_minute() -> None:
    assert actions(plan_tick(schedule(), now=utc(2026, 1, 1, 9, 0, 20), last_tick=None, claimed=(), running=False)) \
        == [("09:00", "run")]
    assert plan_tick(schedule(), now=utc(2026, 1, 1, 9, 1), last_tick=None, claimed=(), running=False) == []


def test_an_on_time_tick_runs_the_slot_and_claimed_slots_are_not_planned_again() -> None:
    now = utc(2026, 1, 1, 9, 15, 2)
    last = utc(2026, 1, 1, 9, 14, 1)
    assert actions(plan_tick(schedule(), now=now, last_tick=last, claimed=(), running=False)) == [("09:15", "run")]
    assert plan_tick(schedule(), now=now, last_tick=last, claimed={utc(2026, 1, 1, 9, 15)}, running=False) == []


@pytest.mark.parametrize(("catchup", "expected"), [
    ("none", [("08:15", "skip-catchup"), ("08:30", "skip-catchup"), ("08:45", "skip-catchup"), ("09:00", "run")]),
    ("latest", [("08:15", "skip-catchup"), ("08:30", "skip-catchup"), ("08:45", "skip-catchup"), ("09:00", "run")]),
    ("all", [("08:15", "run"), ("08:30", "queue"), ("08:45", "queue"), ("09:00", "queue")]),
])
def test_catchup_after_downtime(catchup: str, expected: list[tuple[str, str]]) -> None:
    now, last = utc(2026, 1, 1, 9, 0, 30), utc(2026, 1, 1, 8, 1)
    assert actions(plan_tick(schedule(catchup=catchup), now=now, last_tick=last, claimed=(), running=False)) == expected


def test_catchup_none_skips_a_late_slot_that_latest_would_run() -> None:
    now, last = utc(2026, 1, 1, 9, 10), utc(2026, 1, 1, 8, 59)
    assert now - utc(2026, 1, 1, 9) > ON_TIME
    assert actions(plan_tick(schedule(catchup="none"), now=now, last_tick=last, claimed=(), running=False)) \
        == [("09:00", "skip-catchup")]
    assert actions(plan_tick(schedule(catchup="latest"), now=now, last_tick=last, claimed=(), running=False)) \
        == [("09:00", "run")]


def test_slots_beyond_the_catchup_window_are_not_owed() -> None:
    now, last = utc(2026, 1, 1, 9, 0, 0), utc(2026, 1, 1, 7, 50)
    found = actions(plan_tick(schedule(catchup="all", catchup_window="30m"), now=now, last_tick=last, claimed=(),
                              running=False))
    assert found == [("08:00", "skip-catchup"), ("08:15", "skip-catchup"), ("08:30", "run"), ("08:45", "queue"),
                     ("09:00", "queue")]


@pytest.mark.parametrize(("overlap", "action"), [("skip", "skip-overlap"), ("queue", "queue")])
def test_overlap_while_a_run_is_going(overlap: str, action: str) -> None:
    now, last = utc(2026, 1, 1, 9, 0, 5), utc(2026, 1, 1, 8, 59)
    assert actions(plan_tick(schedule(overlap=overlap), now=now, last_tick=last, claimed=(), running=True)) \
        == [("09:00", action)]


def test_missed_slots_are_those_past_the_grace_with_no_tick() -> None:
    last = utc(2026, 1, 1, 8, 0, 5)
    assert missed_slots(schedule(), now=utc(2026, 1, 1, 8, 19), last_tick=last, grace=timedelta(minutes=5)) == []
    assert missed_slots(schedule(), now=utc(2026, 1, 1, 8, 36), last_tick=last, grace=timedelta(minutes=5)) == [
        utc(2026, 1, 1, 8, 15), utc(2026, 1, 1, 8, 30)]
