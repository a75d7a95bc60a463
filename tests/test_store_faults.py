"""State-store faults on SQLite: a full disk, a busy database, a held init lock, an emptied file, a read-only dir."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ProjectDir


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[list[Path]]:
    """Mount points to undo after the test (tmpfs, read-only binds): these need root."""
    made: list[Path] = []
    yield made
    for point in reversed(made):
        subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)


def _mount(mounts: list[Path], *argv: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs or a read-only bind needs root")
    done = subprocess.run(["mount", *argv], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")
    mounts.append(Path(argv[-1]))


def test_a_full_disk_is_reported_as_a_full_disk_and_the_history_survives(project: ProjectDir, tmp_path: Path,
                                                                         mounts: list[Path]) -> None:
    state = tmp_path / "small"
    state.mkdir()
    _mount(mounts, "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(state))
    project.write("orchestr.yaml", f"state_dir: {state}\n")
    project.write("workflows/w.yaml", f"""
        steps:
          - id: fill
            run: "head -c 4M /dev/zero > {state}/filler; sleep 1; echo done"
          - id: after
            needs: [fill]
            run: "true"
    """)
    project.run("run", "w", "-q")  # the first run fills the disk (and may or may not record its end)
    result = project.run("run", "w", "-q")
    assert result.exit_code == 1, result.output
    assert "full" in result.stderr and "move it aside" not in result.output and "fresh history" not in result.output
    assert "Traceback" not in result.output and "Exception in thread" not in result.output
    (state / "filler").unlink()
    listed = project.run("runs", "--format", "json")
    assert listed.exit_code == 0, listed.output
    assert len(json.loads(listed.stdout)) >= 1  # what was recorded before the disk filled is intact
    assert project.run("run", "w", "-q").exit_code != 75  # and the next run is not blocked


def test_a_database_busy_for_8_seconds_is_waited_on_not_fatal_to_a_running_workflow(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", """
        steps:
          - id: a
            run: "sleep 1"
          - id: b
            needs: [a]
            run: "sleep 1"
    """)
    assert project.run("run", "w", "-q").exit_code == 0  # the database exists
    db = project.root / ".orchestr" / "state.db"
    hold = ("import sqlite3, sys, time\ndb = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "db.execute('BEGIN IMMEDIATE')\nprint('held', flush=True)\ntime.sleep(8)\ndb.execute('ROLLBACK')\n")
    run = project.spawn("run", "w", "-q")
    time.sleep(0.5)
    holder = subprocess.Popen([sys.executable, "-c", hold, str(db)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    out, err = run.communicate(timeout=120)
    holder.communicate(timeout=30)
    assert run.returncode == 0, out + err
    runs = json.loads(project.run("runs", "--format", "json").stdout)
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]


def test_a_held_init_lock_times_out_naming_its_holder(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", "steps:\n  - id: a\n    run: 'true'\n")
    state = project.root / ".orchestr"
    state.mkdir()
    hold = ("import fcntl, os, sys, time\nfd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nos.write(fd, f'pid {os.getpid()} on testhost'.encode())\n"
            "print('held', flush=True)\ntime.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(state / "state.db.init-lock")], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        began = time.monotonic()
        result = project.run("run", "w", "-q", env={"ORCHESTR_STATE_INIT_TIMEOUT": "1"})
        assert time.monotonic() - began < 30
        assert result.exit_code == 1
        assert f"pid {holder.pid} on testhost" in result.stderr and "state.db.init-lock" in result.stderr
    finally:
        holder.kill()
        holder.communicate()


def test_an_emptied_state_database_is_reported_not_taken_as_a_new_history(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", "steps:\n  - id: a\n    run: 'true'\n")
    assert project.run("run", "w", "-q").exit_code == 0
    state = project.root / ".orchestr"
    for suffix in ("-wal", "-shm"):
        (state / f"state.db{suffix}").unlink(missing_ok=True)
    (state / "state.db").write_bytes(b"")
    for command in (("runs",), ("run", "w", "-q")):
        result = project.run(*command)
        assert result.exit_code == 1 and "empty (0 bytes)" in result.stderr and "Traceback" not in result.stderr
    assert (state / "state.db").stat().st_size == 0  # left as it was found


def test_read_only_commands_work_on_a_read_only_state_dir(project: ProjectDir, mounts: list[Path]) -> None:
    project.write("workflows/w.yaml", """
        schedule: { cron: "0 * * * *" }
        steps: [ { id: a, run: "true" } ]
    """)
    assert project.run("run", "w", "-q").exit_code == 0
    state = str(project.root / ".orchestr")
    _mount(mounts, "--bind", state, state)
    _mount(mounts, "-o", "remount,ro,bind", state)
    listed = project.run("runs", "--format", "json")
    assert listed.exit_code == 0, listed.output
    assert [r["status"] for r in json.loads(listed.stdout)] == ["succeeded"]
    run_id = json.loads(listed.stdout)[0]["id"]
    assert project.run("runs", "show", run_id).exit_code == 0
    status = project.run("status")
    assert "Traceback" not in status.output and "read-only" not in status.output
    assert project.run("schedule", "list").exit_code == 0
    refused = project.run("run", "w", "-q")
    assert refused.exit_code == 1 and "not writable" in refused.stderr and "Traceback" not in refused.stderr
