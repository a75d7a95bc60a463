"""`orchestr tick` against a fake clock (a simulated week) and as real processes."""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestr.lock import WorkflowLock
from orchestr.project import Project
from orchestr.scheduling.policy import ledger_start
from orchestr.scheduling.slots import slots_between
from orchestr.store import LockHandover
from orchestr.store import SqliteStore as Store
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
class SimDrainer:
    """One simulated `orchestr run --drain`: holds the lock (inherited, or waited for), serves slots in order."""

    lock: WorkflowLock
    waiter: WorkflowLock | None  # held while waiting for the lock, as the real waiter does
    current: tuple[datetime, datetime] | None = None  # (slot, finishes at)


@dataclass
class SimulatedRuns:
    """Stands in for the drainer processes the tick starts, on a fake clock, with the real ledger and locks."""

    project: Project
    rng: random.Random
    clock: datetime = field(default_factory=lambda: utc(2000, 1, 1))
    launches: Counter[datetime] = field(default_factory=Counter)
    order: list[datetime] = field(default_factory=list)
    drainers: list[SimDrainer] = field(default_factory=list)
    max_concurrent: int = 0
    guard: threading.Lock = field(default_factory=threading.Lock)
    pids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))
    fail_start: float = 0.0  # the share of runs that cannot start (a missing key, an invalid file)

    def launch(self, project: Project, workflow: str, handover: LockHandover | None) -> FakeProcess:
        with self.guard:
            lock, waiter = WorkflowLock(project.state_dir, workflow), None
            if handover is not None:
                lock.adopt(os.dup(handover.fds[0]), "sim-drainer")  # what inheriting the descriptor does
            else:
                waiter = WorkflowLock(project.state_dir, workflow, suffix="waiter")
                if not waiter.try_acquire("sim-waiter"):
                    return FakeProcess(next(self.pids))  # another waiter serves these slots
            self.drainers.append(SimDrainer(lock, waiter))
            return FakeProcess(next(self.pids))

    def advance(self, store: Store, workflow: str, *, everything: bool = False) -> None:
        with self.guard:
            for drainer in list(self.drainers):
                self._advance(store, workflow, drainer, everything)
            self.max_concurrent = max(self.max_concurrent, sum(1 for d in self.drainers if d.current))

    def _advance(self, store: Store, workflow: str, drainer: SimDrainer, everything: bool) -> None:
        if drainer.waiter is not None:
            if not drainer.lock.try_acquire("sim-waiter"):
                if not [r for r in store.owed_slots(workflow) if not r["run_id"]]:
                    drainer.waiter.release()
                    self.drainers.remove(drainer)  # nothing left to wait for
                return
            drainer.waiter.release()
            drainer.waiter = None
        while True:
            if drainer.current is not None:
                slot, finish = drainer.current
                if finish > self.clock and not everything:
                    return
                outcome = "failed" if self.rng.random() < self.fail_start else self.rng.choice(["ran", "ran", "ran", "failed"])
                store.settle_slot(workflow, slot, outcome=outcome)
                drainer.current = None
            owed = [r for r in store.owed_slots(workflow) if not r["run_id"]]
            if not owed:
                drainer.lock.release()
                self.drainers.remove(drainer)
                return
            slot = parse(str(owed[0]["slot"]))
            assert store.take_slot(workflow, slot, f"run-{slot:%m%d%H%M}")
            self.launches[slot] += 1
            self.order.append(slot)
            drainer.current = (slot, self.clock + timedelta(minutes=self.rng.choice([1, 2, 5, 12, 40])))


def _tick(project: Project, sim: SimulatedRuns, now: datetime, store: Store | None = None) -> TickReport:
    if store is not None:
        return tick(project, store, now=now, launcher=sim.launch)  # type: ignore[arg-type]
    own = Store(project.state_dir)
    try:
        return tick(project, own, now=now, launcher=sim.launch)  # type: ignore[arg-type]
    finally:
        own.close()


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


def _simulate_week(project: ProjectDir, *, seed: int, policy: str, days: int = 7) -> tuple[SimulatedRuns, list[TickReport], dict[datetime, dict[str, object]], list[datetime]]:
    """A week of ticks (early, late, doubled, concurrent) with outages, on the real ledger."""
    project.write("workflows/triage.yaml", f"""
        schedule: {{ cron: "{CRON}", timezone: {ZONE}, {policy} }}
        steps: [ {{ id: noop, run: "true" }} ]
    """)
    proj = Project(project.root)
    rng = random.Random(seed)
    sim = SimulatedRuns(proj, rng)
    start = utc(2026, 3, 25, 20, 0) if days == 7 else utc(2026, 3, 28, 12, 0)  # Berlin springs forward on 29 March
    end = start + timedelta(days=days)
    first_tick: datetime | None = None
    last_tick = start
    reports: list[TickReport] = []
    clock = start
    store = Store(proj.state_dir)
    while clock < end:
        sim.clock = clock
        sim.advance(store, "triage")
        roll = rng.random()
        if roll < 0.004:  # the machine goes down for 20 minutes to 7 hours
            clock += timedelta(minutes=rng.randint(20, 420))
            continue
        now = clock + timedelta(seconds=rng.choice([-20, 0, 2, 5, 30, 59, 200]))  # early, on time, late
        batch = _concurrent_ticks(proj, sim, now) if roll > 0.97 else [_tick(proj, sim, now, store)]
        if 0.94 < roll <= 0.97:  # the same tick delivered twice
            batch.append(_tick(proj, sim, now, store))
        reports += batch
        first_tick = first_tick or now
        last_tick = max(last_tick, now)
        clock += timedelta(minutes=rng.choice([1, 1, 1, 2, 5]))
    sim.clock = end
    sim.advance(store, "triage", everything=True)
    rows = {parse(r["slot"]): r for r in store.slots("triage", limit=100_000)}
    store.close()
    assert first_tick is not None
    return sim, reports, rows, slots_between(CRON, ZONE, ledger_start(first_tick, None), last_tick)


CRON, ZONE = "*/15 * * * *", "Europe/Berlin"


@pytest.mark.parametrize("seed", [1, 2])
def test_a_simulated_week_accounts_for_every_slot_exactly_once(project: ProjectDir, seed: int) -> None:
    sim, reports, rows, expected = _simulate_week(project, seed=seed,
                                                  policy="catchup: latest, catchup_window: 3h, overlap: skip")
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


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_catchup_all_with_queue_runs_every_owed_slot_once_in_slot_order(project: ProjectDir, seed: int) -> None:
    sim, _, rows, expected = _simulate_week(project, seed=seed, days=2,
                                            policy="catchup: all, catchup_window: 6h, overlap: queue")
    assert sorted(rows) == expected
    assert all(row["outcome"] in OUTCOMES for row in rows.values()), "a slot was left without an outcome"
    assert not [s for s, r in rows.items() if r["outcome"] == "skipped-overlap"]  # never under overlap: queue
    assert max(sim.launches.values()) == 1 and sim.max_concurrent == 1
    assert sim.order == sorted(sim.order)  # one runner, oldest slot first
    skipped = {s for s, r in rows.items() if r["outcome"] == "skipped-catchup"}
    assert set(sim.order) | skipped == set(rows)  # every slot inside the window ran


def test_catchup_all_with_skip_loses_no_owed_slot_to_concurrent_ticks(project: ProjectDir) -> None:
    sim, _, rows, expected = _simulate_week(project, seed=6, days=2,
                                            policy="catchup: all, catchup_window: 6h, overlap: skip")
    assert sorted(rows) == expected and max(sim.launches.values()) == 1 and sim.max_concurrent == 1
    assert sim.order == sorted(sim.order)
    for slot, row in rows.items():
        if row["outcome"] == "skipped-overlap":  # only a slot that came while a run was going
            assert row["claimed_by"] and slot not in sim.launches


def test_runs_that_cannot_start_still_settle_every_slot(project: ProjectDir) -> None:
    project.write("workflows/triage.yaml", f"""
        schedule: {{ cron: "{CRON}", timezone: {ZONE}, catchup: all, overlap: queue }}
        steps: [ {{ id: noop, run: "true" }} ]
    """)
    proj = Project(project.root)
    sim = SimulatedRuns(proj, random.Random(7), fail_start=0.5)
    clock = utc(2026, 5, 1, 0, 0)
    store = Store(proj.state_dir)
    for _ in range(200):
        sim.clock = clock
        sim.advance(store, "triage")
        _tick(proj, sim, clock + timedelta(seconds=3), store)
        clock += timedelta(minutes=7)
    sim.clock = clock
    sim.advance(store, "triage", everything=True)
    rows = store.slots("triage", limit=10_000)
    store.close()
    assert rows and all(r["outcome"] in OUTCOMES for r in rows)
    assert Counter(r["outcome"] for r in rows)["failed"] > 10


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
    assert re.fullmatch(r"slot 2026-11-24T08:15:00\.000Z failed \(run [0-9a-f-]+\): work: exited with code 4", problem)


def test_a_scheduled_run_of_an_invalid_workflow_still_settles_its_slot(project: ProjectDir) -> None:
    _scheduled(project, run="true")
    assert project.run("tick", "--now", "2026-11-24T08:15:02Z", "--wait").exit_code == 0
    project.write("workflows/job.yaml", """
        name: job
        schedule: { cron: "*/15 * * * *", timezone: Europe/Berlin }
        steps: [ { id: work, run: "true", needs: [nope] } ]
    """)
    assert project.run("tick", "--now", "2026-11-24T08:30:02Z", "--wait").exit_code == 1
    row = next(r for r in _slot_rows(project) if r["slot"] == "2026-11-24T08:30:00.000Z")
    assert row["outcome"] == "failed" and "unknown step 'nope'" in str(row["detail"])
    assert "(log: .orchestr/logs/job.log)" in str(row["detail"])


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("concurrent", [False, True])
def test_catchup_all_with_queue_runs_every_owed_slot_in_slot_order_over_many_trials(
        project: ProjectDir, concurrent: bool) -> None:
    """The first tick's run is still starting when the catch-up tick comes (and, concurrently, a second one)."""
    owed = ["2026-11-24T08:00:00.000Z", "2026-11-24T08:15:00.000Z", "2026-11-24T08:30:00.000Z",
            "2026-11-24T08:45:00.000Z", "2026-11-24T09:00:00.000Z"]
    for trial in range(5):
        trial_dir = ProjectDir(project.root / f"trial-{trial}")
        _scheduled(trial_dir, run='echo "$ORCHESTR_SLOT $ORCHESTR_RUN_ID" >> ran.txt', extra=", catchup: all, overlap: queue")
        assert trial_dir.run("tick", "--now", "2026-11-24T08:00:20Z").exit_code == 0  # its run starts detached
        ticks = [trial_dir.spawn("tick", "--now", "2026-11-24T09:01:00Z", "--wait") for _ in range(2 if concurrent else 1)]
        outputs = [t.communicate(timeout=90) for t in ticks]
        assert [t.returncode for t in ticks] == [0] * len(ticks), outputs
        _wait_for(lambda d=trial_dir: len(_lines(d.root / "ran.txt")) >= 5)  # type: ignore[misc]
        ran = [line.split() for line in _lines(trial_dir.root / "ran.txt")]
        assert [slot for slot, _ in ran] == owed, f"trial {trial}: {ran}"
        assert len({run for _, run in ran}) == 5
        rows = sorted(_slot_rows(trial_dir), key=lambda r: str(r["slot"]))
        assert [(r["slot"], r["outcome"], r["run_id"]) for r in rows] == [(slot, "ran", run) for slot, run in ran]


def _wait_for(condition: object, timeout: float = 30) -> None:
    assert callable(condition)
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.05)


def test_a_scheduled_run_that_cannot_start_shows_in_status_at_once_and_a_later_success_clears_it(project: ProjectDir) -> None:
    project.write("workflows/job.yaml", """
        name: job
        schedule: { cron: "*/15 * * * *", timezone: UTC }
        agents: { a: { model: "anthropic:claude-sonnet-4-6", instructions: Say hi. } }
        steps: [ { id: think, agent: a, prompt: hello } ]
    """)
    env = {"ANTHROPIC_API_KEY": ""}
    assert project.run("tick", "--now", "2026-11-24T08:00:20Z", "--wait", env=env).exit_code == 1
    result = project.cli("status", "--now", "2026-11-24T08:01:00Z", "--format", "json")
    assert result.exit_code == 1
    [problem] = json.loads(result.stdout)["workflows"][0]["problems"]
    assert problem == ("slot 2026-11-24T08:00:00.000Z failed (run not started): the run could not start: "
                       "ANTHROPIC_API_KEY is not set: models from 'anthropic' need it (export ANTHROPIC_API_KEY=..., "
                       "or run offline with --replay FILE) (log: .orchestr/logs/job.log)")
    assert "ANTHROPIC_API_KEY is not set" in (project.root / ".orchestr/logs/job.log").read_text()
    _scheduled(project, run="true")
    project.write("workflows/job.yaml", (project.root / "workflows/job.yaml").read_text().replace("Europe/Berlin", "UTC"))
    assert project.run("tick", "--now", "2026-11-24T08:15:20Z", "--wait").exit_code == 0
    cleared = project.cli("status", "--now", "2026-11-24T08:16:00Z", "--format", "json")
    assert cleared.exit_code == 0, cleared.stdout
    assert [r["outcome"] for r in _slot_rows(project)] == ["ran", "failed"]  # the failure stays in history


def test_a_killed_drainer_settles_its_slot_at_the_next_tick_and_a_resume_to_success_settles_it_ran(project: ProjectDir) -> None:
    _scheduled(project, run='if [ ! -f fixed ]; then echo $PPID > drainer.pid; sleep 60; fi')
    assert project.run("tick", "--now", "2026-11-24T08:15:02Z").exit_code == 0
    _wait_for(lambda: (project.root / "drainer.pid").exists())
    time.sleep(0.2)
    runs = json.loads(project.cli("runs", "--format", "json").stdout)
    assert runs[0]["status"] == "running"
    drainer_pid = runs[0]["pid"]
    os.kill(drainer_pid, 9)
    _wait_for(lambda: not Path(f"/proc/{drainer_pid}").exists() or "Z" in Path(f"/proc/{drainer_pid}/stat").read_text().split()[2])
    assert project.run("tick", "--now", "2026-11-24T08:16:02Z", "--wait").exit_code == 0
    [row] = _slot_rows(project)
    assert row["outcome"] == "failed" and "died without finishing" in str(row["detail"])
    status = project.cli("status", "--now", "2026-11-24T08:17:00Z", "--format", "json")
    assert status.exit_code == 1 and "died without finishing" in status.stdout
    (project.root / "fixed").write_text("")
    resumed = project.run("run", "job", "--resume", "last")
    assert resumed.exit_code == 0, resumed.output
    [row] = _slot_rows(project)
    assert (row["outcome"], row["run_id"]) == ("ran", runs[0]["id"])
    assert project.cli("status", "--now", "2026-11-24T08:17:00Z").exit_code == 0


def test_a_queued_slot_that_waits_past_the_deadline_is_recorded_timed_out(project: ProjectDir) -> None:
    _scheduled(project, run="sleep 8", extra=", overlap: queue, deadline: 2s")
    manual = project.spawn("run", "job")
    _wait_for(lambda: (project.root / ".orchestr/locks/job.lock").exists() and
              "run" in (project.root / ".orchestr/locks/job.lock").read_text())
    began = time.monotonic()
    assert project.run("tick", "--now", "2026-11-24T08:15:02Z", "--wait").exit_code == 0
    assert time.monotonic() - began < 7  # the waiter gave up at the deadline, not when the lock came free
    [row] = _slot_rows(project)
    assert row["outcome"] == "timed-out" and "past the schedule's deadline (2s)" in str(row["detail"])
    manual.kill()
    manual.communicate()


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


def test_an_invalid_cron_is_reported_by_tick_and_status_and_the_other_schedules_still_run(project: ProjectDir) -> None:
    _scheduled(project)
    project.write("workflows/bad.yaml", """
        schedule: { cron: "nope" }
        steps: [ { id: a, run: "true" } ]
    """)
    result = project.run("tick", "--now", "2026-11-24T08:15:02Z", "--wait")
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert "workflows/bad.yaml:1:19: invalid schedule cron: expected 5 fields" in result.stderr
    assert [r["outcome"] for r in _slot_rows(project)] == ["ran"]
    status = project.cli("status", "--now", "2026-11-24T08:16:00Z")
    assert status.exit_code == 1 and "workflows/bad.yaml:1:19: invalid schedule cron" in status.stderr
