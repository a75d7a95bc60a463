"""`orchestr logs RUN [-f]` from a second process, and `orchestr cancel RUN` (manual and scheduled runs)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from orchestr.store import SqliteStore as Store
from tests.conftest import ProjectDir


def _wait_running(project: ProjectDir, *, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = project.cli("runs", "--format", "json")
        runs = json.loads(listed.stdout) if listed.exit_code == 0 else []
        if runs and runs[0]["status"] == "running":
            row: dict[str, Any] = runs[0]
            return row
        time.sleep(0.1)
    raise AssertionError("no run started")


def _wait_file(path: os.PathLike[str] | str, *, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not os.path.exists(path):
        time.sleep(0.05)
    assert os.path.exists(path), path


def test_logs_follows_a_running_workflow_from_another_process(project: ProjectDir) -> None:
    project.write("workflows/chatty.yaml", """
        name: chatty
        steps:
          - id: talk
            run: "echo first; touch started; while [ ! -f go ]; do sleep 0.05; done; echo second >&2; echo third"
          - id: after
            needs: [talk]
            run: "echo after-line"
    """)
    run = project.spawn("run", "chatty")
    try:
        _wait_file(project.root / "started")
        row = _wait_running(project)
        follower = project.spawn("logs", row["id"], "-f")
        time.sleep(0.5)
        assert follower.poll() is None  # still following: the run waits for us
        (project.root / "go").write_text("")
        out, err = follower.communicate(timeout=60)
        run.communicate(timeout=60)
        assert run.returncode == 0
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert follower.returncode == 0, err
    lines = out.splitlines()
    order = [next(i for i, line in enumerate(lines) if needle in line)
             for needle in ("of chatty started", "talk: first", "talk: third", "✓ talk succeeded",
                            "after: after-line", "run succeeded (exit 0)")]
    assert order == sorted(order), out
    assert "talk: second" in out  # stderr: its order against stdout is the reader threads'

    again = project.cli("logs", row["id"], "--no-output")
    assert again.exit_code == 0 and "talk: first" not in again.stdout and "✓ after succeeded" in again.stdout


def test_logs_of_a_scheduled_run_show_its_output(project: ProjectDir) -> None:
    project.write("workflows/job.yaml", """
        name: job
        schedule: { cron: "*/15 * * * *", timezone: UTC }
        steps: [ { id: work, run: "echo scheduled-output" } ]
    """)
    assert project.run("tick", "--now", "2026-11-24T08:15:01Z", "--wait").exit_code == 0
    shown = project.cli("logs", "last")
    assert shown.exit_code == 0, shown.output
    assert "work: scheduled-output" in shown.stdout and "run succeeded" in shown.stdout


def test_cancel_stops_the_run_and_records_cancelled(project: ProjectDir) -> None:
    project.write("workflows/slow.yaml", """
        name: slow
        steps: [ { id: wait, run: "sleep 60 & echo $! > child.pid; wait" } ]
    """)
    run = project.spawn("run", "slow")
    try:
        _wait_file(project.root / "child.pid")
        row = _wait_running(project)
        began = time.monotonic()
        result = project.cli("cancel", row["id"])
        assert result.exit_code == 0, result.output
        assert f"run {row['id']} cancelled (exit 130)" in result.stdout
        run.communicate(timeout=30)
        assert run.returncode == 130
        assert time.monotonic() - began < 20
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    child = int((project.root / "child.pid").read_text())
    assert not os.path.exists(f"/proc/{child}") or " Z " in Path(f"/proc/{child}/stat").read_text()
    shown = json.loads(project.cli("runs", "show", row["id"], "--format", "json").stdout)
    assert shown["status"] == "cancelled" and shown["steps"][0]["status"] == "cancelled"
    again = project.cli("cancel", row["id"])
    assert again.exit_code == 2 and "is not running: it cancelled" in again.stderr


def test_cancel_of_a_scheduled_run_settles_its_slot(project: ProjectDir) -> None:
    project.write("workflows/job.yaml", """
        name: job
        schedule: { cron: "*/15 * * * *", timezone: UTC }
        steps: [ { id: work, run: "touch started; sleep 60" } ]
    """)
    tick = project.spawn("tick", "--now", "2026-11-24T08:15:01Z", "--wait")
    try:
        _wait_file(project.root / "started")
        row = _wait_running(project)
        result = project.cli("cancel", "last")
        assert result.exit_code == 0, result.output
        tick.communicate(timeout=60)
    finally:
        if tick.poll() is None:
            tick.kill()
            tick.communicate()
    store = Store(project.root / ".orchestr")
    try:
        (slot,) = store.slots_of_run(row["id"])
        run = store.run(row["id"])
    finally:
        store.close()
    assert run is not None and run.status == "cancelled" and run.exit_code == 130
    assert slot["outcome"] == "failed" and slot["detail"].startswith("work: the run was cancelled")


def test_cancel_refuses_a_pid_it_cannot_prove_is_the_run(project: ProjectDir) -> None:
    project.write("workflows/job.yaml", """
        name: job
        steps: [ { id: work, run: "true" } ]
    """)
    store = Store(project.root / ".orchestr")
    try:  # a record naming a live pid of this host (this test's own) that holds no lock for it
        store.create_run(run_id="20261124-081500-abcdef", workflow="job", trigger="manual", inputs={}, options={})
    finally:
        store.close()
    result = project.cli("cancel", "20261124-081500-abcdef")
    assert result.exit_code == 1, result.output
    assert f"pid {os.getpid()} is not proven to be run 20261124-081500-abcdef's process" in result.stderr
    assert "nothing was signalled" in result.stderr


def test_logs_and_cancel_of_an_unknown_run_say_so(project: ProjectDir) -> None:
    project.write("workflows/job.yaml", """
        name: job
        steps: [ { id: work, run: "true" } ]
    """)
    for command in ("logs", "cancel"):
        result = project.cli(command, "nope")
        assert result.exit_code == 2 and "no run 'nope' (see `orchestr runs list`)" in result.stderr


def test_cancel_refuses_a_run_on_another_host(project: ProjectDir) -> None:
    import sqlite3

    project.write("workflows/job.yaml", """
        name: job
        steps: [ { id: work, run: "true" } ]
    """)
    store = Store(project.root / ".orchestr")
    try:
        store.create_run(run_id="20261124-081500-abcdef", workflow="job", trigger="manual", inputs={}, options={})
    finally:
        store.close()
    with sqlite3.connect(project.root / ".orchestr" / "state.db") as db:
        db.execute("UPDATE runs SET host='build-7' WHERE id='20261124-081500-abcdef'")
    db.close()
    result = project.cli("cancel", "20261124-081500-abcdef")
    assert result.exit_code == 2, result.output
    assert "runs on host build-7" in result.stderr and "cancel it there" in result.stderr
