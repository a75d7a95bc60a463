"""Several machines, one PostgreSQL ledger: separate project copies with their own host ids.

ORCHESTR_HOST_ID stands in for the hostname, so two "machines" share this one: a liveness check by
pid applies only on the holder's own host; from the other, only the heartbeat tells.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestr.events import parse_iso
from orchestr.project import Project
from orchestr.scheduling.policy import ledger_start
from orchestr.scheduling.slots import slots_between
from orchestr.store import Lock, LockHandover, Store, open_store
from orchestr.tick import tick
from tests.conftest import ProjectDir

OUTCOMES = {"ran", "failed", "skipped-overlap", "skipped-catchup", "unverified", "timed-out"}


def _machines(tmp_path: Path, url: str, workflows: dict[str, str]) -> list[ProjectDir]:
    """Two copies of one project (as two clones on two machines would be)."""
    copies = []
    for name in ("a", "b"):
        copy = ProjectDir(tmp_path / name)
        for file, text in workflows.items():
            copy.write(f"workflows/{file}", text)
        copy.write("orchestr.yaml", f"state: {{ url: {json.dumps(url)} }}\n")
        copies.append(copy)
    open_store(Project(copies[0].root)).close()  # the schema, made on first use
    return copies


def _env(host: str, **extra: str) -> dict[str, str]:
    return {"ORCHESTR_HOST_ID": host, **extra}


def _wait_for(predicate: object, timeout: float = 30) -> None:
    give_up = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < give_up, "timed out waiting"
        time.sleep(0.1)


def _lease_holder(url: str, name: str) -> dict[str, object] | None:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(url, row_factory=dict_row) as conn:
        return conn.execute("SELECT holder, host, pid FROM leases WHERE name=%s", (name,)).fetchone()


def test_a_run_on_host_b_while_host_a_runs_the_workflow_exits_75(tmp_path: Path, postgres_url: str) -> None:
    a, b = _machines(tmp_path, postgres_url, {"w.yaml": "steps:\n  - id: a\n    run: sleep 20\n"})
    first = a.spawn("run", "w", "-q", env=_env("host-a"))
    try:
        _wait_for(lambda: (_lease_holder(postgres_url, "lock:w") or {}).get("host") == "host-a")
        second = b.run("run", "w", "-q", env=_env("host-b"))
        assert second.exit_code == 75, second.output
        assert "busy" in second.stderr and "on host-a" in second.stderr and "Traceback" not in second.stderr
        listed = json.loads(b.run("runs", "--format", "json", env=_env("host-b")).stdout)
        assert [(r["host"], r["status"]) for r in listed] == [("host-a", "running")]  # B sees A's run
        assert "host-a" in b.run("runs", env=_env("host-b")).stdout
    finally:
        first.kill()
        first.communicate()


def test_kill_9_on_host_a_is_seen_crashed_from_host_b_once_its_heartbeat_is_stale(tmp_path: Path,
                                                                                  postgres_url: str) -> None:
    a, b = _machines(tmp_path, postgres_url, {"w.yaml": "steps:\n  - id: a\n    run: sleep 60\n"})
    stale = {"ORCHESTR_HEARTBEAT_STALE": "3"}
    first = a.spawn("run", "w", "-q", env=_env("host-a", **stale), start_new_session=True)
    try:
        _wait_for(lambda: (_lease_holder(postgres_url, "lock:w") or {}).get("host") == "host-a")

        def seen_from_b() -> list[dict[str, object]]:
            return list(json.loads(b.run("runs", "--format", "json", env=_env("host-b", **stale)).stdout))

        _wait_for(lambda: bool(seen_from_b()))
        os.killpg(first.pid, signal.SIGKILL)
        first.communicate()
        killed_at = time.monotonic()
        assert b.run("run", "w", "-q", env=_env("host-b", **stale)).exit_code == 75  # its lease is still fresh
        _wait_for(lambda: seen_from_b()[0]["status"] == "crashed", timeout=30)
        assert time.monotonic() - killed_at > 1  # not before the heartbeat could go stale
        assert seen_from_b()[0]["host"] == "host-a"
        b.write("workflows/w.yaml", "steps:\n  - id: a\n    run: 'true'\n")
        after = b.run("run", "w", "-q", env=_env("host-b", **stale))
        assert after.exit_code == 0, after.output  # the dead machine's lease went stale: B may run
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
            first.communicate()


# --- a simulated week: 4 tickers on 2 hosts -------------------------------------------------------


@dataclass
class FakeProcess:
    pid: int

    def wait(self) -> int:
        return 0


@dataclass
class Drainer:
    workflow: str
    lock: Lock
    waiter: Lock | None
    current: tuple[datetime, datetime] | None = None


@dataclass
class Cluster:
    """The drainers the tickers start, on a fake clock, holding real leases in the shared database."""

    store: Store
    rng: random.Random
    clock: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    launches: Counter[tuple[str, datetime]] = field(default_factory=Counter)
    drainers: list[Drainer] = field(default_factory=list)
    max_concurrent: Counter[str] = field(default_factory=Counter)
    guard: threading.Lock = field(default_factory=threading.Lock)

    def launcher(self, store: Store) -> object:
        def launch(project: Project, workflow: str, handover: LockHandover | None) -> FakeProcess:
            with self.guard:
                lock, waiter = store.lock(workflow), None
                if handover is not None:
                    assert lock.adopt_from(handover.env, "sim-drainer")
                else:
                    waiter = store.lock(workflow, suffix="waiter")
                    if not waiter.try_acquire("sim-waiter"):
                        return FakeProcess(os.getpid())
                self.drainers.append(Drainer(workflow, lock, waiter))
                return FakeProcess(os.getpid())  # this process holds the lease: a live pid

        return launch

    def advance(self, *, everything: bool = False) -> None:
        with self.guard:
            for drainer in list(self.drainers):
                self._advance(drainer, everything)
            for name in {d.workflow for d in self.drainers}:
                busy = sum(1 for d in self.drainers if d.workflow == name and d.current)
                self.max_concurrent[name] = max(self.max_concurrent[name], busy)

    def _advance(self, drainer: Drainer, everything: bool) -> None:
        owed = lambda: [r for r in self.store.owed_slots(drainer.workflow) if not r["run_id"]]  # noqa: E731
        if drainer.waiter is not None:
            if not drainer.lock.try_acquire("sim-waiter"):
                if not owed():
                    drainer.waiter.release()
                    self.drainers.remove(drainer)
                return
            drainer.waiter.release()
            drainer.waiter = None
        while True:
            if drainer.current is not None:
                slot, finish = drainer.current
                if finish > self.clock and not everything:
                    return
                self.store.settle_slot(drainer.workflow, slot, outcome=self.rng.choice(["ran", "ran", "failed"]))
                drainer.current = None
            left = owed()
            if not left:
                drainer.lock.release()
                self.drainers.remove(drainer)
                return
            slot = parse_iso(str(left[0]["slot"]))
            assert self.store.take_slot(drainer.workflow, slot, f"run-{slot:%m%d%H%M}")
            self.launches[(drainer.workflow, slot)] += 1
            drainer.current = (slot, self.clock + timedelta(minutes=self.rng.choice([0, 1, 3, 10, 25])))


SIM_DAYS = float(os.environ.get("SIM_DAYS", "7"))
SCHEDULES = {
    "minutely": ("* * * * *", "catchup: latest, catchup_window: 1h, overlap: skip"),
    "quarterly": ("*/15 * * * *", "catchup: all, catchup_window: 3h, overlap: queue"),
}


@pytest.mark.timeout(600)  # about 40,000 ledger round trips: generous on a loaded 2-core machine
def test_four_tickers_on_two_hosts_over_a_week_double_no_slot_and_lose_none(
        tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    workflows = {f"{name}.yaml": f'schedule: {{ cron: "{cron}", timezone: Europe/Berlin, {policy} }}\n'
                                 'steps: [ { id: noop, run: "true" } ]\n' for name, (cron, policy) in SCHEDULES.items()}
    _machines(tmp_path, postgres_url, workflows)
    for name in ("a2", "b2"):  # a second ticker on each host: its own copy, its own connection pool
        shutil.copytree(tmp_path / name[0], tmp_path / name)
    tickers = [(host, Project(tmp_path / d)) for host, d in (("host-a", "a"), ("host-a", "a2"), ("host-b", "b"), ("host-b", "b2"))]
    stores = [open_store(p) for _, p in tickers]
    rng = random.Random(13)
    cluster = Cluster(stores[0], rng)
    start = datetime(2026, 3, 25, 20, 0, tzinfo=UTC)
    end, clock = start + timedelta(days=SIM_DAYS), start
    down: dict[str, datetime] = {}
    first: datetime | None = None
    last = start
    hosts_seen: Counter[str] = Counter()
    try:
        while clock < end:
            cluster.clock = clock
            cluster.advance()
            for host in ("host-a", "host-b"):  # a host goes down for 20 minutes to 9 hours
                if host not in down and rng.random() < 0.002:
                    down[host] = clock + timedelta(minutes=rng.randint(20, 540))
                elif host in down and down[host] <= clock:
                    del down[host]
            up = [i for i, (host, _) in enumerate(tickers) if host not in down]
            chosen = rng.sample(up, k=min(len(up), rng.choice([1, 1, 1, 2])))
            now = clock + timedelta(seconds=rng.choice([-20, 0, 3, 30, 59]))
            for index in chosen:
                host, project = tickers[index]
                monkeypatch.setenv("ORCHESTR_HOST_ID", host)
                report = tick(project, stores[index], now=now, launcher=cluster.launcher(stores[index]))  # type: ignore[arg-type]
                assert not report.problems
                hosts_seen[host] += len(report.actions)
            if chosen:
                first, last = first or now, max(last, now)
            clock += timedelta(minutes=rng.choice([1, 1, 2, 3, 5]))
        cluster.clock = end
        cluster.advance(everything=True)
        assert first is not None
        for name, (cron, _) in SCHEDULES.items():
            rows = {parse_iso(str(r["slot"])): r for r in stores[0].slots(name, limit=100_000)}
            expected = slots_between(cron, "Europe/Berlin", ledger_start(first, None), last)
            assert sorted(rows) == expected, f"{name}: a slot was lost or invented"
            assert all(r["outcome"] in OUTCOMES for r in rows.values()), f"{name}: a slot has no outcome"
            ran = [slot for (wf, slot) in cluster.launches if wf == name]
            assert max(cluster.launches[(name, s)] for s in ran) == 1, f"{name}: a slot ran twice"
            assert cluster.max_concurrent[name] == 1
            claimers = {str(r["claimed_by"]).split(":")[0] for r in rows.values()}
            assert claimers == {"host-a", "host-b"}
        assert hosts_seen["host-a"] > 100 and hosts_seen["host-b"] > 100
    finally:
        for store in stores:
            store.close()


def test_state_info_migrate_and_every_message_hide_the_password(tmp_path: Path, postgres_url: str) -> None:
    secret_url = postgres_url.replace("postgres@", "postgres:hunter2@")  # trust auth ignores the password
    a, _ = _machines(tmp_path, secret_url, {"w.yaml": "steps:\n  - id: a\n    run: 'true'\n"})
    assert a.run("run", "w", "-q").exit_code == 0
    info = a.run("state", "info")
    assert info.exit_code == 0, info.output
    assert "backend: postgresql" in info.stdout and "postgres:***@" in info.stdout and "schema version: 2" in info.stdout
    assert "runs: 1" in info.stdout and "hunter2" not in info.output
    facts = json.loads(a.run("state", "info", "--format", "json").stdout)
    assert facts["counts"]["runs"] == 1 and facts["configured_by"] == "orchestr.yaml (state.url)"
    migrated = a.run("state", "migrate")
    assert migrated.exit_code == 0 and "already current" in migrated.stdout and "hunter2" not in migrated.output
    down = a.run("runs", env={"ORCHESTR_STATE_URL": "postgresql://u:hunter2@127.0.0.1:1/db"})
    assert down.exit_code == 1 and "u:***@127.0.0.1:1/db" in down.stderr
    assert "hunter2" not in down.output and "Traceback" not in down.output
    wrong = a.run("runs", env={"ORCHESTR_STATE_URL": "mysql://u:hunter2@db/x"})
    assert wrong.exit_code == 2 and "ORCHESTR_STATE_URL" in wrong.stderr and "hunter2" not in wrong.output
    a.write("orchestr.yaml", "state:\n  url: sqlite:///x.db\n")
    invalid = a.run("validate")
    assert invalid.exit_code == 2 and "orchestr.yaml:2:" in invalid.stderr, invalid.output


def test_status_and_schedule_list_on_one_machine_see_the_other_machines_slots(tmp_path: Path, postgres_url: str) -> None:
    a, b = _machines(tmp_path, postgres_url, {"job.yaml": (
        'schedule: { cron: "*/15 * * * *", timezone: UTC }\nsteps: [ { id: a, run: "true" } ]\n')})
    ticked = a.run("tick", "--now", "2026-11-24T08:15:03Z", "--wait", env=_env("host-a"))
    assert ticked.exit_code == 0, ticked.output
    again = b.run("tick", "--now", "2026-11-24T08:15:04Z", "--wait", env=_env("host-b"))
    assert again.exit_code == 0 and "08:15" not in again.stdout  # claimed once, by host A
    listed = json.loads(b.run("schedule", "list", "--now", "2026-11-24T08:16:00Z", "--format", "json",
                              env=_env("host-b")).stdout)
    assert [(r["last_outcome"], r["last_host"]) for r in listed] == [("ran", "host-a")]
    status = b.run("status", "--now", "2026-11-24T08:16:00Z", env=_env("host-b"))
    assert status.exit_code == 0, status.output
