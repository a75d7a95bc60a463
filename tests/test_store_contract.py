"""The store's contract, run against both backends: SQLite and a real PostgreSQL server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestr.errors import Busy, StateError
from orchestr.events import Event, iso, utc_now
from orchestr.project import Project
from orchestr.store import Store, open_store
from orchestr.store.fake import FakeDatabase, FakeStore

T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)


def _select(kind: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The backend's URL as ORCHESTR_STATE_URL ('' for SQLite under the project's .orchestr/)."""
    if kind == "postgres":
        url = request.getfixturevalue("postgres_url")
        monkeypatch.setenv("ORCHESTR_STATE_URL", url)
        return str(url)
    monkeypatch.delenv("ORCHESTR_STATE_URL", raising=False)
    return kind if kind == "fake" else ""


@pytest.fixture(params=["sqlite", "postgres", "fake"])
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every backend, the in-memory fake included."""
    return _select(request.param, request, monkeypatch)


@pytest.fixture(params=["sqlite", "postgres"])
def durable(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The backends other processes can share (locks across processes, schema versions)."""
    return _select(request.param, request, monkeypatch)


@pytest.fixture
def project(tmp_path: Path) -> Project:
    (tmp_path / "workflows").mkdir()
    return Project(tmp_path)


@pytest.fixture
def opener(project: Project, backend: str) -> Callable[[], Store]:
    """Opens another connection to the same store (for the fake: another view of one database)."""
    if backend == "fake":
        shared = FakeDatabase()
        return lambda: FakeStore(shared, state_dir=project.state_dir)
    return lambda: open_store(project)


@pytest.fixture
def store(opener: Callable[[], Store]) -> Iterator[Store]:
    opened = opener()
    yield opened
    opened.close()


def _run(store: Store, run_id: str, workflow: str = "w", slot: str | None = None) -> None:
    store.create_run(run_id=run_id, workflow=workflow, trigger="manual", inputs={"n": 1}, options={}, slot=slot)


def test_runs_are_recorded_listed_and_found(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTR_HOST_ID", "host-a")
    for index, run_id in enumerate(["20260501-080000-aaaaaa", "20260501-080001-aaaabb", "20260501-080002-cccccc"]):
        _run(store, run_id, workflow="w" if index < 2 else "other")
        time.sleep(0.002)
    store.finish_run("20260501-080000-aaaaaa", status="failed", exit_code=1, error="a: boom", tokens={"input": 3})
    first = store.run("20260501-080000-aaaaaa")
    assert first is not None and first.status == "failed" and first.tokens == {"input": 3} and first.host == "host-a"
    assert first.inputs == {"n": 1} and first.pid == os.getpid()
    assert [r.id for r in store.runs()] == ["20260501-080002-cccccc", "20260501-080001-aaaabb", "20260501-080000-aaaaaa"]
    assert [r.id for r in store.runs(workflow="w", limit=1)] == ["20260501-080001-aaaabb"]
    last = store.find_run("last", workflow="w")
    assert last is not None and last.id == "20260501-080001-aaaabb"
    found = store.find_run("20260501-080002")
    assert found is not None and found.id == "20260501-080002-cccccc"
    assert store.find_run("20260501-08000") is None  # ambiguous
    assert store.find_run("2026050_%") is None  # LIKE's wildcards are literal
    assert store.run("nope") is None


def test_steps_attempts_and_events_round_trip_in_order(store: Store) -> None:
    _run(store, "r1")
    store.save_step("r1", "b", status="running", attempts=1, started_at="2026-05-01T08:00:02Z", outputs={}, output=None,
                    reason=None, tokens={})
    store.save_step("r1", "a", status="succeeded", attempts=2, started_at="2026-05-01T08:00:01Z", outputs={"k": "v"},
                    output={"x": [1]}, reason=None, tokens={"input": 1})
    store.save_step("r1", "b", status="failed", attempts=1, started_at="2026-05-01T08:00:02Z", outputs={}, output=None,
                    reason="exit 1", tokens={})
    steps = store.steps("r1")
    assert [(s["step_id"], s["status"]) for s in steps] == [("a", "succeeded"), ("b", "failed")]
    assert steps[0]["outputs"] == {"k": "v"} and steps[0]["output"] == {"x": [1]} and "seq" not in steps[0]
    store.save_attempt("r1", "a", 1, status="running", started_at="2026-05-01T08:00:01Z")
    store.save_attempt("r1", "a", 1, status="error", started_at="2026-05-01T08:00:01Z", exit_code=1,
                       tool_calls=[{"tool": "t"}])
    attempts = store.attempts("r1")
    assert len(attempts) == 1 and attempts[0]["status"] == "error" and attempts[0]["tool_calls"] == [{"tool": "t"}]
    for n in range(5):
        store.append_event(Event(ts=utc_now(), run="r1", workflow="w", event=f"e{n}", data={"n": n}))
    assert [e["data"]["n"] for e in store.events("r1")] == [0, 1, 2, 3, 4]
    store.reopen_run("r1")
    assert store.attempts("r1")[0]["status"] == "error"  # only `running` attempts become crashed


def test_the_ledger_advances_only_forwards_and_claims_each_slot_once(store: Store) -> None:
    store.record_tick("w", T0)
    store.record_tick("w", T0 - timedelta(hours=1))  # a late tick never moves the ledger back
    assert store.last_tick("w") == (iso(T0), iso(T0))
    slots = [T0 + timedelta(minutes=m) for m in range(3)]
    won = store.claim_slots("w", [(slots[0], "run", None), (slots[1], "skip-overlap", "skipped-overlap")],
                            claimed_by="a:1", now=slots[1])
    assert won == slots[:2]
    assert store.claim_slots("w", [(s, "run", None) for s in slots], claimed_by="b:2", now=slots[2]) == [slots[2]]
    assert store.claim_slot("w", slots[0], action="run", claimed_by="c:3") is False
    assert store.claimed_slots("w", since=T0 - timedelta(minutes=1)) == set(slots)
    assert [r["slot"] for r in store.owed_slots("w")] == [iso(slots[0]), iso(slots[2])]
    assert store.take_slot("w", slots[0], "r1") and not store.take_slot("w", slots[0], "r2")
    assert not store.settle_slot("w", slots[0], outcome="timed-out", only_untaken=True)  # taken: not settled
    assert store.settle_slot("w", slots[0], outcome="ran", run_id="r1")
    assert store.slots_of_run("r1")[0]["outcome"] == "ran"
    assert [r["slot"] for r in store.owed_slots("w")] == [iso(slots[2])]
    assert [s["slot"] for s in store.slots("w", limit=2)] == [iso(slots[2]), iso(slots[1])]


def test_concurrent_claims_from_separate_connections_win_each_slot_once(opener: Callable[[], Store]) -> None:
    stores = [opener() for _ in range(4)]
    slots = [T0 + timedelta(minutes=m) for m in range(60)]
    wins: Counter[datetime] = Counter()
    barrier = threading.Barrier(len(stores))

    def claim(store: Store, name: str) -> None:
        barrier.wait()
        for start in range(0, 60, 5):
            for slot in store.claim_slots("w", [(s, "run", None) for s in slots[start:start + 10]],
                                          claimed_by=name, now=slots[start]):
                wins[slot] += 1

    threads = [threading.Thread(target=claim, args=(s, f"t{i}")) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert set(wins) == set(slots) and set(wins.values()) == {1}


def test_the_workflow_lock_is_exclusive_names_its_holder_and_is_freed(opener: Callable[[], Store]) -> None:
    one, two = opener(), opener()
    try:
        lock = one.lock("w")
        assert lock.try_acquire("run-1")
        other = two.lock("w")
        assert not other.try_acquire("run-2")
        holder = other.holder()
        assert holder is not None and holder["run"] == "run-1" and holder["pid"] == os.getpid()
        with pytest.raises(Busy, match="run-1"):
            other.acquire("run-2")
        assert two.lock("w", suffix="tick").try_acquire("t")  # companions are separate locks
        lock.release()
        assert other.holder() is None and other.try_acquire("run-2")
        other.release()
    finally:
        one.close()
        two.close()


HOLD = """
import os, sys, time
from pathlib import Path
from orchestr.project import Project
from orchestr.store import open_store
store = open_store(Project(Path(sys.argv[1])))
lock = store.lock("w")
if len(sys.argv) > 2:
    assert lock.adopt_from(os.environ, "child")
else:
    assert lock.try_acquire("child")
print("held", flush=True)
time.sleep(60)
"""


def test_a_lock_held_by_a_killed_process_is_reclaimed_on_its_machine(project: Project, durable: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(project.root)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        store = open_store(project)
        lock = store.lock("w")
        assert not lock.try_acquire("me")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        assert lock.try_acquire("me")  # no waiting for a stale heartbeat: the pid is gone
        lock.release()
        store.close()
    finally:
        child.kill()
        child.communicate()


def test_a_held_lock_is_handed_to_a_child_with_no_gap(project: Project, durable: str) -> None:
    store = open_store(project)
    lock = store.lock("w")
    assert lock.try_acquire("tick")
    handover = lock.handover()
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(project.root), "adopt"], stdout=subprocess.PIPE,
                             text=True, env={**os.environ, **handover.env}, pass_fds=handover.fds)
    try:
        lock.handed_to(child.pid)
        lock.release()  # the tick is done; the child holds it now
        assert store.lock("w").holder() is not None
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        holder = store.lock("w").holder()
        assert holder is not None and holder["run"] == "child" and holder["pid"] == child.pid
        assert not store.lock("w").try_acquire("someone")
    finally:
        child.kill()
        child.communicate()
        store.close()


def test_a_run_whose_heartbeat_went_stale_on_another_machine_is_crashed(store: Store,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTR_HEARTBEAT_STALE", "1")
    monkeypatch.setenv("ORCHESTR_HOST_ID", "host-a")
    _run(store, "r1")
    monkeypatch.setenv("ORCHESTR_HOST_ID", "host-b")  # seen from the other machine: only the heartbeat tells
    row = store.run("r1")
    assert row is not None and row.effective_status == "running"
    time.sleep(1.3)
    row = store.run("r1")
    assert row is not None and row.effective_status == "crashed" and row.host == "host-a"
    store.heartbeat("r1")
    row = store.run("r1")
    assert row is not None and row.effective_status == "running"


def test_info_counts_rows_and_hides_the_password(store: Store, backend: str) -> None:
    _run(store, "r1")
    info = store.info()
    assert info.schema_version == info.current_version and info.counts["runs"] == 1
    assert info.backend == {"": "sqlite", "fake": "fake"}.get(backend, "postgresql")


def test_a_wrong_schema_version_is_a_clear_error_and_migrate_moves_it_forward(project: Project, durable: str) -> None:
    backend, store = durable, open_store(project)
    store.close()
    _set_version(store, backend, "1")
    with pytest.raises(StateError, match=r"schema version 1, older .*orchestr state migrate"):
        open_store(project)
    migrating = open_store(project, migrating=True)
    assert migrating.migrate() == (1, 2)
    assert migrating.migrate() == (2, 2)
    migrating.close()
    _set_version(store, backend, "99")
    with pytest.raises(StateError, match="newer than this orchestr"):
        open_store(project)
    _set_version(store, backend, "two")
    with pytest.raises(StateError, match="not a number"):
        open_store(project)


def _set_version(store: Store, backend: str, value: str) -> None:
    """Stands in for a database written by another orchestr version."""
    if backend:
        import psycopg

        with psycopg.connect(backend, autocommit=True) as conn:
            conn.execute("UPDATE meta SET value=%s WHERE key='schema_version'", (value,))
    else:
        import sqlite3

        with sqlite3.connect(store.state_dir / "state.db") as conn:
            conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (value,))


def test_approvals_are_numbered_decided_once_and_forgotten_with_their_run(store: Store) -> None:
    _run(store, "r1")
    _run(store, "r2", workflow="other")
    ask = {"workflow": "w", "message": "ship?", "files": "[]", "expires_at": "2026-05-02T08:00:00.000Z"}
    first = store.request_approval(run_id="r1", step_id="gate", requested_at="2026-05-01T08:00:00.000Z", **ask)
    assert (first["request"], first["decision"], first["consumed"]) == (1, None, 0)
    store.note_approval("r1", "gate", 1, "ok")
    assert store.open_approvals() == []  # r1 is not waiting yet
    store.finish_run("r1", status="waiting", exit_code=4, error=None, tokens={})
    assert [r.id for r in store.waiting_runs("w")] == ["r1"] and store.waiting_runs("other") == []
    [pending] = store.open_approvals(workflow="w")
    assert pending["notify"] == "ok" and store.open_approvals(workflow="other") == []
    decide = {"by": "ana", "comment": None, "decided_at": "2026-05-01T09:00:00.000Z"}
    assert store.decide_approval("r1", "gate", 1, decision="approved", **decide) is True
    assert store.decide_approval("r1", "gate", 1, decision="rejected", **decide) is False  # the first one stands
    store.consume_approval("r1", "gate", 1)
    assert store.open_approvals() == []
    again = store.request_approval(run_id="r1", step_id="gate", requested_at="2026-05-01T10:00:00.000Z", **ask)
    assert again["request"] == 2
    assert [(a["request"], a["decision"]) for a in store.approvals("r1")] == [(1, "approved"), (2, None)]
    store.delete_runs(["r1"])
    assert store.approvals("r1") == []
