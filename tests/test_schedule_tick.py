"""`orchestr tick` against a fake clock (a simulated week) and as real processes."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestr.errors import Busy
from orchestr.lock import WorkflowLock
from orchestr.project import Project
from orchestr.scheduling.policy import ledger_start
from orchestr.scheduling.slots import slots_between
from orchestr.store import Store
from orchestr.tick import TickReport, tick
from tests.conftest import ProjectDir

OUTCOMES = {"ran", "failed", "skipped-overlap", "skipped-catchup", "unverified", "timed-out"}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- the simulation -----------------------------------------------------------------------------


@dataclass
class FakeProcess:
    pid: int

    def wait(self) -> int:
        return 0


@dataclass
class SimulatedRuns:
    """Stands in for `orchestr run --slot`: holds the workflow lock for a while, then settles."""

    project: Project
    rng: random.Random
    clock: datetime = field(default_factory=lambda: utc(2000, 1, 1))
    launches: Counter[datetime] = field(default_factory=Counter)
    running: list[tuple[datetime, WorkflowLock, datetime]] = field(default_factory=list)
    max_concurrent: int = 0
    guard: threading.Lock = field(default_factory=threading.Lock)
    pids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    def launch(self, project: Project, workflow: str, slot: datetime, queue: bool) -> FakeProcess:
        with self.guard:
            self.launches[slot] += 1
            lock = WorkflowLock(project.state_dir, workflow)
            try:
                lock.acquire(f"run-{slot:%H%M}")
            except Busy as exc:  # what a real scheduled run does when it finds the lock taken
                self._settle(workflow, slot, "skipped-overlap", str(exc))
                return FakeProcess(next(self.pids))
            minutes = self.rng.choice([1, 2, 5, 12, 40])
            self.running.append((self.clock + timedelta(minutes=minutes), lock, slot))
            self.max_concurrent = max(self.max_concurrent, len(self.running))
            return FakeProcess(next(self.pids))

    def finish_due(self, workflow: str, *, everything: bool = False) -> None:
        with self.guard:
            for entry in list(self.running):
                finish, lock, slot = entry
                if everything or finish <= self.clock:
                    self.running.remove(entry)
                    lock.release()
                    self._settle(workflow, slot, self.rng.choice(["ran", "ran", "ran", "failed"]), None)

    def _settle(self, workflow: str, slot: datetime, outcome: str, detail: str | None) -> None:
        store = Store(self.project.state_dir)
        try:
            store.settle_slot(workflow, slot, outcome=outcome, detail=detail)
        finally:
            store.close()


def _tick(project: Project, sim: SimulatedRuns, now: datetime) -> TickReport:
    store = Store(project.state_dir)
    try:
        return tick(project, store, now=now, launcher=sim.launch)  # type: ignore[arg-type]
    finally:
        store.close()


def _concurrent_ticks(project: Project, sim: SimulatedRuns, now: datetime) -> list[TickReport]:
    reports: list[TickReport] = []
    barrier = threading.Barrier(2)

    def one() -> None:
        barrier.wait()
        reports.append(_tick(project, sim, now))

    threads = [threading.Thread(target=one) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return reports


CRON, ZONE = "*/15 * * * *", "Europe/Berlin"


@pytest.mark.parametrize("seed", [1, 2])
def test_a_simulated_week_accounts_for_every_slot_exactly_once(project: ProjectDir, seed: int) -> None:
    project.write("workflows/triage.yaml", f"""
        schedule: {{ cron: "{CRON}", timezone: {ZONE}, catchup: latest, catchup_window: 3h, overlap: skip }}
        steps: [ {{ id: noop, run: "true" }} ]
    """)
    proj = Project(project.root)
    rng = random.Random(seed)
    sim = SimulatedRuns(proj, rng)
    start, end = utc(2026, 3, 25, 20, 0), utc(2026, 4, 1, 20, 0)  # Berlin springs forward on 29 March
    first_tick: datetime | None = None
    last_tick = start
    reports: list[TickReport] = []
    clock = start
    while clock < end:
        sim.clock = clock
        sim.finish_due("triage")
        roll = rng.random()
        if roll < 0.004:  # the machine goes down for 20 minutes to 7 hours
            clock += timedelta(minutes=rng.randint(20, 420))
            continue
        now = clock + timedelta(seconds=rng.choice([-20, 0, 2, 5, 30, 59, 200]))  # early, on time, late
        batch = _concurrent_ticks(proj, sim, now) if roll > 0.97 else [_tick(proj, sim, now)]
        if roll > 0.94 and roll <= 0.97:  # the same tick delivered twice
            batch.append(_tick(proj, sim, now))
        reports += batch
        first_tick = first_tick or now
        last_tick = max(last_tick, now)
        clock += timedelta(minutes=rng.choice([1, 1, 1, 2, 5]))
    sim.clock = end
    sim.finish_due("triage", everything=True)

    store = Store(proj.state_dir)
    rows = {parse(r["slot"]): r for r in store.slots("triage", limit=100_000)}
    store.close()
    assert first_tick is not None
    expected = slots_between(CRON, ZONE, ledger_start(first_tick, None), last_tick)
    assert sorted(rows) == expected  # every owed slot is in the ledger, and nothing else
    assert all(row["outcome"] in OUTCOMES for row in rows.values()), "a slot was left without an outcome"
    assert max(sim.launches.values()) == 1  # no slot ran twice
    assert sim.max_concurrent == 1  # overlap: skip
    spring = utc(2026, 3, 29, 1, 0)  # 03:00 CEST: right after the gap
    assert spring in rows and utc(2026, 3, 29, 0, 45) in rows and len([s for s in rows if utc(2026, 3, 29, 0, 45) < s < spring]) == 0
    for report in reports:  # catchup latest: only the newest due slot of a tick may start a run
        started = [a for a in report.actions if a.action in ("run", "queue", "skip-overlap")]
        assert len(started) <= 1 and (not started or started[0] is report.actions[-1] or
                                      report.now - report.actions[-1].slot > timedelta(hours=3))
        for action in report.actions:
            if report.now - action.slot > timedelta(hours=3):
                assert action.action == "skip-catchup"
    counts = Counter(row["outcome"] for row in rows.values())
    assert counts["ran"] > 100 and counts["skipped-catchup"] > 0 and counts["skipped-overlap"] > 0


# --- real processes -----------------------------------------------------------------------------


def _scheduled(project: ProjectDir, *, cron: str = "*/15 * * * *", run: str = "echo \"$ORCHESTR_RUN_ID\" >> ran.txt",
               extra: str = "") -> None:
    project.write("workflows/job.yaml", f"""
        name: job
        schedule: {{ cron: "{cron}", timezone: Europe/Berlin {extra} }}
        steps:
          - id: work
            run: {json.dumps(run)}
    """)


def _slot_rows(project: ProjectDir) -> list[dict[str, object]]:
    store = Store(project.root / ".orchestr")
    try:
        return store.slots("job")
    finally:
        store.close()


def test_two_tick_processes_at_once_run_the_slot_once(project: ProjectDir) -> None:
    _scheduled(project)
    now = "2026-11-24T08:15:03Z"
    procs = [project.spawn("tick", "--now", now, "--wait") for _ in range(2)]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert len((project.root / "ran.txt").read_text().splitlines()) == 1
    rows = _slot_rows(project)
    assert [(r["slot"], r["outcome"]) for r in rows] == [("2026-11-24T08:15:00.000Z", "ran")]


def test_a_run_past_its_deadline_is_stopped_recorded_and_does_not_block_the_next_slot(project: ProjectDir) -> None:
    _scheduled(project, run="sleep 60 & echo $! > child.pid; wait", extra=", deadline: 2s")
    began = time.monotonic()
    first = project.run("tick", "--now", "2026-11-24T08:15:01Z", "--wait", timeout=60)
    assert time.monotonic() - began < 30
    assert first.exit_code == 1, first.output  # the run it started failed: timed out
    child = int((project.root / "child.pid").read_text())
    assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    assert [r["outcome"] for r in _slot_rows(project)] == ["timed-out"]
    runs = json.loads(project.cli("runs", "--format", "json").stdout)
    assert runs[0]["status"] == "timed-out"
    _scheduled(project, run="true", extra=", deadline: 2s")
    second = project.run("tick", "--now", "2026-11-24T08:30:01Z", "--wait", timeout=60)
    assert second.exit_code == 0, second.output
    assert [r["outcome"] for r in _slot_rows(project)] == ["ran", "timed-out"]


def test_status_turns_red_when_ticks_stop(project: ProjectDir) -> None:
    _scheduled(project, run="true")
    assert project.cli("status", "--now", "2026-11-24T08:10:00Z").exit_code == 1  # never ticked
    assert project.run("tick", "--now", "2026-11-24T08:15:02Z", "--wait").exit_code == 0
    healthy = project.cli("status", "--now", "2026-11-24T08:20:00Z", "--format", "json")
    assert healthy.exit_code == 0, healthy.output
    assert json.loads(healthy.stdout)["ok"] is True
    late = project.cli("status", "--now", "2026-11-24T09:40:00Z", "--format", "json")
    assert late.exit_code == 1
    problems = json.loads(late.stdout)["workflows"][0]["problems"]
    assert problems == ["5 slot(s) with no record since the last tick at 2026-11-24T08:15:02.000Z "
                        "(first: 2026-11-24T08:30:00.000Z): no tick came; is cron/systemd running?"]


def test_status_reports_a_failed_last_run(project: ProjectDir) -> None:
    _scheduled(project, run="exit 4")
    assert project.run("tick", "--now", "2026-11-24T08:15:02Z", "--wait").exit_code == 1
    result = project.cli("status", "--now", "2026-11-24T08:16:00Z", "--format", "json")
    assert result.exit_code == 1
    [problem] = json.loads(result.stdout)["workflows"][0]["problems"]
    assert problem.startswith("the last run (") and problem.endswith("slot 2026-11-24T08:15:00.000Z) failed: work: exited with code 4")


def test_a_scheduled_run_of_an_invalid_workflow_still_settles_its_slot(project: ProjectDir) -> None:
    _scheduled(project, run="true")
    assert project.run("tick", "--now", "2026-11-24T08:15:02Z").exit_code == 0
    time.sleep(0.2)
    project.write("workflows/job.yaml", """
        name: job
        schedule: { cron: "*/15 * * * *", timezone: Europe/Berlin }
        steps: [ { id: work, run: "true", needs: [nope] } ]
    """)
    result = project.run("run", "job", "--trigger", "schedule", "--slot", "2026-11-24T08:30:00.000Z")
    assert result.exit_code == 2
    store = Store(project.root / ".orchestr")
    store.claim_slot("job", utc(2026, 11, 24, 8, 30), action="run", claimed_by="test")
    store.close()
    assert project.run("run", "job", "--trigger", "schedule", "--slot", "2026-11-24T08:30:00.000Z").exit_code == 2
    row = next(r for r in _slot_rows(project) if r["slot"] == "2026-11-24T08:30:00.000Z")
    assert row["outcome"] == "failed" and "unknown step 'nope'" in str(row["detail"])


def test_schedule_list_shows_next_slots_with_offsets(project: ProjectDir) -> None:
    _scheduled(project, cron="30 2 * * *")
    result = project.cli("schedule", "list", "--next", "3", "--now", "2026-03-28T12:00:00Z", "--format", "json")
    assert result.exit_code == 0, result.output
    row = json.loads(result.stdout)[0]
    assert row["next"] == ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00", "2026-03-31T02:30:00+02:00"]
    assert (row["workflow"], row["cron"], row["timezone"], row["last_outcome"]) == ("job", "30 2 * * *", "Europe/Berlin", None)
    text = project.cli("schedule", "list", "--now", "2026-03-28T12:00:00Z")
    assert "2026-03-29T03:00:00+02:00" in text.stdout


def test_an_idle_tick_changes_nothing_and_imports_no_provider_sdk(project: ProjectDir) -> None:
    _scheduled(project)
    code = ("import sys; from orchestr.cli import app\n"
            "try:\n    app(['tick', '--now', '2026-11-24T08:16:00Z'])\nexcept SystemExit as e:\n    assert e.code == 0, e\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('anthropic', 'openai', 'mcp', 'httpx', 'httpx2')))")
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-c", code], cwd=project.root, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert _slot_rows(project) == []


def test_two_workflows_with_one_name_do_not_share_a_ledger(project: ProjectDir) -> None:
    _scheduled(project, run="echo a >> ran.txt")
    project.write("workflows/zz-copy.yaml", """
        name: job
        schedule: { cron: "*/15 * * * *", timezone: UTC }
        steps: [ { id: work, run: "echo b >> ran.txt" } ]
    """)
    result = project.run("tick", "--now", "2026-11-24T08:15:02Z", "--wait")
    assert result.exit_code == 1
    assert "workflows/zz-copy.yaml: workflow name 'job' is also used by workflows/job.yaml" in result.stderr
    assert (project.root / "ran.txt").read_text() == "a\n"
