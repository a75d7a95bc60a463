"""Issue 11, items 3 and 4 with real processes: kill -9 of the runner at random moments leaves no
orphan and no double run; any number of Ctrl-C/SIGTERM ends in one orderly cancel; a timeout does
not wait on an escaped grandchild's pipes. Bounds are generous: the machine is loaded."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestr.orphans import LEDGER_NAME, start_time, sweep_leftovers
from orchestr.processes import kill_group
from tests.conftest import ProjectDir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (reparented, not yet reaped) is not running
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return True


def _wait_for(condition: Callable[[], bool], timeout: float = 30) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _pids(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()] if path.exists() else []


def _starts(project: ProjectDir) -> int:
    log = project.root / "log"
    return log.read_text().count("start") if log.exists() else 0


def _runs(project: ProjectDir) -> list[dict[str, object]]:
    return list(json.loads(project.cli("runs", "list", "--format", "json").stdout))


def test_kill_9_at_random_moments_leaves_no_orphan_and_no_double_run(project: ProjectDir) -> None:
    # Each step first looks for a live process of any earlier attempt: one would be a double run.
    # (A zombie is not running: this machine's init reaps orphans late.)
    step = ('for p in $(cat pids 2>/dev/null); do if grep -qs "^State:[[:space:]]*[^Z[:space:]]" /proc/$p/status; '
            'then echo "DOUBLE $p" >> log; fi; done; '
            'echo "start $ORCHESTR_STEP" >> log; sleep 30 & echo $! >> pids; sleep 1.5')
    project.write("workflows/w.yaml", f"""
        name: w
        steps:
          - id: a
            run: {json.dumps(step)}
          - id: b
            needs: [a]
            run: {json.dumps(step)}
    """)
    rng = random.Random(11)
    for trial in range(6):
        starts = _starts(project)
        proc = project.spawn("run", "w", "-q")
        assert _wait_for(lambda n=starts: _starts(project) > n), "no step started"
        time.sleep(rng.uniform(0.0, 2.5))  # mid-step, between steps, or in the second step
        proc.kill()
        proc.communicate(timeout=30)
        leftovers = _pids(project.root / "pids")
        # a step's `sleep 30` lives on unless something stops it: the watchdog, within its 2 s grace
        assert _wait_for(lambda ps=leftovers: not any(_alive(p) for p in ps), timeout=10), f"trial {trial}: orphans"
        resumed = project.run("run", "w", "--resume", "last", "-q", timeout=90)
        assert resumed.exit_code == 0, (trial, resumed.output)
    log = (project.root / "log").read_text()
    assert "DOUBLE" not in log, log


def test_the_next_run_stops_what_a_dead_run_left_and_says_so(project: ProjectDir) -> None:
    """The sweep alone (as if the watchdog had died with the runner): a ledger naming a live group."""
    project.write("workflows/w.yaml", """
        name: w
        steps:
          - id: a
            run: "true"
    """)
    leftover = subprocess.Popen(["sleep", "60"], start_new_session=True)
    dead_runner = subprocess.Popen(["true"])
    dead_runner.wait()
    ledger = project.root / ".orchestr" / "runs" / "20260101-000000-dead00" / LEDGER_NAME
    ledger.parent.mkdir(parents=True)
    ledger.write_text(f"# workflow=w runner={dead_runner.pid}\n{leftover.pid} {start_time(leftover.pid)}\n")
    result = project.run("run", "w", "-q")
    assert result.exit_code == 0, result.output
    assert leftover.wait(timeout=15) is not None
    assert "left by run 20260101-000000-dead00" in result.stderr and str(leftover.pid) in result.stderr
    assert not ledger.exists()


def test_a_ledger_whose_pid_was_reused_is_not_acted_on(tmp_path: Path) -> None:
    other = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        ledger = tmp_path / "r1" / LEDGER_NAME
        ledger.parent.mkdir()
        ledger.write_text(f"# workflow=w runner=999999999\n{other.pid} 1\n")  # another start time: a reused pid
        said: list[str] = []
        assert sweep_leftovers(tmp_path, "w", say=said.append, kill=kill_group) == 0
        assert other.poll() is None and said == []
    finally:
        other.kill()
        other.wait()


def _trap_workflow(project: ProjectDir) -> None:
    project.write("workflows/stubborn.yaml", """
        name: stubborn
        steps:
          - id: hold
            run: |
              trap '' TERM INT
              echo $$ >> pids
              sleep 60 &
              echo $! >> pids
              wait
    """)


@pytest.mark.parametrize("signals", [
    [signal.SIGINT],
    [signal.SIGINT, signal.SIGINT],
    [signal.SIGTERM, signal.SIGTERM],
    [signal.SIGINT] * 5,
    [signal.SIGTERM, signal.SIGINT, signal.SIGTERM, signal.SIGINT, signal.SIGINT],
])
def test_any_number_of_signals_ends_in_one_orderly_cancel(project: ProjectDir, signals: list[signal.Signals]) -> None:
    _trap_workflow(project)
    proc = project.spawn("run", "stubborn")
    assert _wait_for(lambda: len(_pids(project.root / "pids")) == 2), "the step never started"
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.05)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in out + err and "KeyboardInterrupt" not in out + err
    assert [r["status"] for r in _runs(project)] == ["cancelled"]
    pids = _pids(project.root / "pids")
    assert _wait_for(lambda: not any(_alive(p) for p in pids), timeout=10), "a TERM-ignoring process outlived the run"


def test_a_timeout_does_not_wait_on_an_escaped_grandchilds_pipes(project: ProjectDir) -> None:
    project.write("workflows/esc.yaml", """
        name: esc
        steps:
          - id: hold
            timeout: 2s
            run: |
              setsid sh -c 'echo $$ > escaped.pid; exec sleep 30' &
              sleep 30
    """)
    began = time.monotonic()
    result = project.run("run", "esc", "-q", timeout=60)
    elapsed = time.monotonic() - began
    escaped = _pids(project.root / "escaped.pid")
    for pid in escaped:
        os.kill(pid, signal.SIGKILL)
    assert result.exit_code == 1, result.output
    assert "timed out after 2s" in result.output
    assert elapsed < 9, elapsed  # 2 s + the 2 s grace + start-up; it was 12 s
