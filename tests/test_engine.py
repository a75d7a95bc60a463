"""`orchestr run`: parallel steps, retries, timeouts, verification, records, resume, locks, signals."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.conftest import ProjectDir


def _events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def _wait_for_lock(project: ProjectDir, workflow: str, pid: int) -> None:
    lock = project.root / ".orchestr" / "locks" / f"{workflow}.lock"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if lock.exists() and f'"pid": {pid}' in lock.read_text():
            return
        time.sleep(0.02)
    raise AssertionError("the run never took its lock")


def test_fan_out_fan_in_with_outputs_and_condition(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", """
        steps:
          - id: produce
            run: |
              echo "count=3" >> "$ORCHESTR_OUTPUT"
              echo "label=a=b" >> "$ORCHESTR_OUTPUT"
          - id: left
            needs: [produce]
            env: { COUNT: "${{ steps.produce.outputs.count }}" }
            run: echo "left $COUNT" > left.txt
          - id: right
            needs: [produce]
            env: { LABEL: "${{ steps.produce.outputs.label }}" }
            run: echo "$LABEL" > right.txt
          - id: join
            needs: [left, right]
            if: ${{ steps.produce.outputs.count | int > 2 }}
            run: cat left.txt right.txt > joined.txt
          - id: never
            needs: [produce]
            if: ${{ steps.produce.outputs.count == "0" }}
            run: touch never.txt
    """)
    result = project.cli("run", "w", "--events", "ev.jsonl")
    assert result.exit_code == 0, result.output
    assert (project.root / "joined.txt").read_text() == "left 3\na=b\n"
    assert not (project.root / "never.txt").exists()
    finished = {e["step"]: e for e in _events(project.root / "ev.jsonl") if e["event"] == "step.finished"}
    assert finished["never"]["status"] == "skipped" and finished["never"]["reason"] == "condition was false"
    assert finished["join"]["status"] == "succeeded"


def test_independent_steps_run_in_parallel(project: ProjectDir) -> None:
    steps = "\n".join(f"  - id: s{i}\n    run: sleep 0.5" for i in range(6))
    project.write("workflows/p.yaml", "steps:\n" + steps + "\n")
    began = time.monotonic()
    result = project.cli("run", "p")
    elapsed = time.monotonic() - began
    assert result.exit_code == 0, result.output
    assert elapsed < 2.0, f"6 parallel sleeps of 0.5s took {elapsed:.2f}s"


def test_max_parallel_limits_concurrency(project: ProjectDir) -> None:
    steps = "\n".join(f"  - id: s{i}\n    run: sleep 0.3" for i in range(4))
    project.write("workflows/p.yaml", "steps:\n" + steps + "\n")
    began = time.monotonic()
    assert project.cli("run", "p", "--max-parallel", "1").exit_code == 0
    assert time.monotonic() - began >= 1.2


def test_failed_step_skips_dependents_but_not_independent_branches(project: ProjectDir) -> None:
    project.write("workflows/f.yaml", """
        steps:
          - id: bad
            run: echo boom >&2; exit 4
          - id: after-bad
            needs: [bad]
            run: touch after-bad.txt
          - id: independent
            run: touch independent.txt
    """)
    result = project.cli("run", "f", "--events", "ev.jsonl")
    assert result.exit_code == 1
    assert (project.root / "independent.txt").exists()
    assert not (project.root / "after-bad.txt").exists()
    finished = {e["step"]: e for e in _events(project.root / "ev.jsonl") if e["event"] == "step.finished"}
    assert finished["bad"]["status"] == "failed"
    assert "exited with code 4: boom" in str(finished["bad"]["reason"])
    assert finished["after-bad"] == {**finished["after-bad"], "status": "skipped", "reason": "needs 'bad', which failed"}


def test_continue_on_error_lets_dependents_run_and_exit_zero(project: ProjectDir) -> None:
    project.write("workflows/c.yaml", """
        steps:
          - id: optional
            continue_on_error: true
            run: exit 1
          - id: next
            needs: [optional]
            run: touch next.txt
    """)
    assert project.cli("run", "c").exit_code == 0
    assert (project.root / "next.txt").exists()


def test_flaky_step_succeeds_on_third_attempt_and_every_attempt_is_recorded(project: ProjectDir) -> None:
    project.write("workflows/flaky.yaml", """
        steps:
          - id: flaky
            retry: { attempts: 3, backoff: 10ms, max_backoff: 20ms }
            run: |
              n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n
              [ "$n" -ge 3 ]
    """)
    result = project.cli("run", "flaky", "--events", "ev.jsonl")
    assert result.exit_code == 0, result.output
    events = _events(project.root / "ev.jsonl")
    assert [e["attempt"] for e in events if e["event"] == "step.started"] == [1, 2, 3]
    assert len([e for e in events if e["event"] == "step.retry"]) == 2
    shown = project.cli("runs", "show", "last", "--format", "json")
    attempts = json.loads(shown.stdout)["steps"][0]["attempt_records"]
    assert [a["status"] for a in attempts] == ["error", "error", "succeeded"]


def test_timeout_kills_the_whole_process_group(project: ProjectDir) -> None:
    project.write("workflows/hang.yaml", """
        steps:
          - id: hang
            timeout: 1s
            run: |
              sleep 300 &
              echo $! > child.pid
              sleep 300
    """)
    began = time.monotonic()
    result = project.cli("run", "hang", "--events", "ev.jsonl")
    assert result.exit_code == 1
    assert time.monotonic() - began < 10
    child = int((project.root / "child.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child), "the background child outlived its step"
    finished = next(e for e in _events(project.root / "ev.jsonl") if e["event"] == "step.finished")
    assert "timed out after 1s" in str(finished["reason"])


def test_exit_zero_but_missing_file_is_unverified_exit_3(project: ProjectDir) -> None:
    project.write("workflows/u.yaml", """
        steps:
          - id: claims
            run: echo "I wrote the report"
            verify: [ { file_exists: out/report.md } ]
    """)
    result = project.cli("run", "u", "--junit", "junit.xml")
    assert result.exit_code == 3
    assert "file_exists out/report.md" in result.stdout and "does not exist" in result.stdout
    tree = ET.parse(project.root / "junit.xml")
    failure = tree.find(".//testcase[@name='claims']/failure")
    assert failure is not None and failure.get("type") == "unverified"


def test_retry_on_unverified_then_verified(project: ProjectDir) -> None:
    project.write("workflows/u.yaml", """
        steps:
          - id: eventually
            retry: { attempts: 2, backoff: 10ms, on: [unverified] }
            run: |
              if [ -f first ]; then mkdir -p out && echo ok > out/r.txt; else touch first; fi
            verify: [ { file_contains: { path: out/r.txt, pattern: "^ok$" } } ]
    """)
    assert project.cli("run", "u").exit_code == 0


def test_a_hanging_command_check_is_stopped(project: ProjectDir) -> None:
    project.write("workflows/c.yaml", """
        steps:
          - id: s
            run: "true"
            verify: [ { command: "sleep 60", timeout: 1s } ]
    """)
    began = time.monotonic()
    result = project.cli("run", "c")
    assert result.exit_code == 3
    assert time.monotonic() - began < 10
    assert "check timed out after 1s" in result.stdout


def test_each_check_kind(project: ProjectDir) -> None:
    project.write("schemas/r.json", '{"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}')
    project.write("workflows/k.yaml", """
        steps:
          - id: s
            run: |
              mkdir -p out; echo '{"n": 2}' > out/r.json; echo "n=2" >> "$ORCHESTR_OUTPUT"; exit 7
            verify:
              - exit_code: 7
              - file_exists: out/r.json
              - file_contains: { path: out/r.json, pattern: '"n": \\d' }
              - json_schema: { path: out/r.json, schema: schemas/r.json }
              - json_schema: { path: out/r.json, schema: { type: object, required: [missing] } }
              - command: "test -s out/r.json"
              - expr: "${{ steps.s.outputs.n | int == 2 }}"
    """)
    result = project.cli("run", "k", "--events", "ev.jsonl")
    checks = [e for e in _events(project.root / "ev.jsonl") if e["event"] == "verify.result"]
    assert [(c["check"], c["passed"]) for c in checks] == [
        ("exit_code", True), ("file_exists", True), ("file_contains", True), ("json_schema", True),
        ("json_schema", False), ("command", True), ("expr", True)]
    assert "'missing' is a required property" in str(checks[4]["detail"])
    assert result.exit_code == 3


def test_values_from_steps_never_become_shell_source(project: ProjectDir) -> None:
    project.write("workflows/inj.yaml", """
        inputs:
          name: { type: string, default: "$(touch pwned-input)" }
        steps:
          - id: evil
            run: |
              echo 'a="; touch pwned; echo "' >> "$ORCHESTR_OUTPUT"
              echo 'b=$(touch pwned2)' >> "$ORCHESTR_OUTPUT"
              echo 'c=`touch pwned3`' >> "$ORCHESTR_OUTPUT"
          - id: use
            needs: [evil]
            env:
              A: "${{ steps.evil.outputs.a }}"
              B: "${{ steps.evil.outputs.b }}"
              C: "${{ steps.evil.outputs.c }}"
              N: "${{ inputs.name }}"
            run: |
              echo "$A $B $C $N" > seen.txt
            verify: [ { expr: "${{ steps.evil.outputs.b == '$(touch pwned2)' }}" } ]
    """)
    result = project.cli("run", "inj")
    assert result.exit_code == 0, result.output
    assert (project.root / "seen.txt").read_text() == '"; touch pwned; echo " $(touch pwned2) `touch pwned3` $(touch pwned-input)\n'
    assert not list(project.root.glob("pwned*"))


def test_expression_inside_run_is_rejected_with_the_env_fix(project: ProjectDir) -> None:
    project.write("workflows/bad.yaml", """
        inputs: { who: { default: x } }
        steps:
          - id: s
            run: echo ${{ inputs.who }}
    """)
    result = project.cli("run", "bad")
    assert result.exit_code == 2
    assert "workflows/bad.yaml:4:10: error: `${{ inputs.who }}` inside run: would put a value into shell source" in result.stderr
    assert 'env: { VALUE: "${{ inputs.who }}" }' in result.stderr


def test_inputs_are_typed_and_checked(project: ProjectDir) -> None:
    project.write("workflows/i.yaml", """
        inputs:
          count: { type: integer, required: true }
          mode: { type: string, default: fast, enum: [fast, full] }
        steps:
          - id: s
            env: { C: "${{ inputs.count + 1 }}", M: "${{ inputs.mode }}" }
            run: echo "$C $M" > o.txt
    """)
    assert project.cli("run", "i").exit_code == 2
    bad = project.cli("run", "i", "-i", "count=abc")
    assert bad.exit_code == 2 and "input 'count': expected an integer, got 'abc'" in bad.stderr
    typo = project.cli("run", "i", "-i", "count=1", "-i", "mdoe=full")
    assert typo.exit_code == 2 and "did you mean 'mode'?" in typo.stderr
    assert project.cli("run", "i", "-i", "count=1", "-i", "mode=slow").exit_code == 2
    assert project.cli("run", "i", "-i", "count=41", "-i", "mode=full").exit_code == 0
    assert (project.root / "o.txt").read_text() == "42 full\n"


def test_secrets_are_redacted_from_events_records_and_trace(project: ProjectDir) -> None:
    project.write("workflows/s.yaml", """
        secrets: [CRM_TOKEN]
        steps:
          - id: leak
            run: |
              echo "token is $CRM_TOKEN"
              echo "token=$CRM_TOKEN" >> "$ORCHESTR_OUTPUT"
              exit 1
    """)
    secret = "s3cr3t-value-123"
    result = project.cli("run", "s", "-v", "--events", "ev.jsonl", env={"CRM_TOKEN": secret})
    assert result.exit_code == 1
    assert secret not in result.output
    assert "token is ***" in result.stdout
    assert secret not in (project.root / "ev.jsonl").read_text()
    db = project.root / ".orchestr" / "state.db"
    dump = "\n".join(sqlite3.connect(db).iterdump())
    assert secret not in dump and "token is ***" in dump


def test_run_history_list_and_show(project: ProjectDir) -> None:
    project.write("workflows/h.yaml", "steps:\n  - id: a\n    run: echo hi\n")
    assert project.cli("run", "h").exit_code == 0
    listed = json.loads(project.cli("runs", "list", "--format", "json").stdout)
    assert [(r["workflow"], r["status"], r["exit_code"]) for r in listed] == [("h", "succeeded", 0)]
    shown = project.cli("runs", "show", listed[0]["id"][:15])
    assert shown.exit_code == 0 and "a  succeeded  1 attempt(s)" in shown.stdout
    assert project.cli("runs", "show", "nope").exit_code == 2


def test_busy_lock_exits_75_naming_the_holder(project: ProjectDir) -> None:
    project.write("workflows/slow.yaml", "steps:\n  - id: a\n    run: sleep 3\n")
    first = project.spawn("run", "slow", "-q")
    try:
        _wait_for_lock(project, "slow", first.pid)
        second = project.run("run", "slow", "-q")
        assert second.exit_code == 75
        assert f"(pid {first.pid})" in second.stderr and "is busy: run 2" in second.stderr
    finally:
        first.communicate(timeout=30)
    assert first.returncode == 0


def test_two_runs_at_once_exactly_one_runs(project: ProjectDir) -> None:
    project.write("workflows/slow.yaml", "steps:\n  - id: a\n    run: sleep 1; echo x >> ran.txt\n")
    procs = [project.spawn("run", "slow", "-q") for _ in range(2)]
    codes = sorted(p.wait(timeout=30) for p in procs)
    for p in procs:
        p.communicate()
    assert codes == [0, 75]
    assert (project.root / "ran.txt").read_text() == "x\n"


def test_processes_opening_a_fresh_state_store_at_once_all_succeed(tmp_path: Path) -> None:
    """Turning a new database to WAL ignores SQLite's busy timeout: the store serialises it."""
    code = ("import sys, time\nfrom pathlib import Path\nfrom orchestr.store import SqliteStore as Store\n"
            "time.sleep(max(0.0, float(sys.argv[1]) - time.time()))\n"
            "store = Store(Path(sys.argv[2]))\nstore.record_tick('w', __import__('datetime').datetime.now("
            "__import__('datetime').UTC))\nstore.close()\n")
    for attempt in range(5):
        state = tmp_path / f"state{attempt}"
        at = str(time.time() + 1.5)
        procs = [subprocess.Popen([sys.executable, "-c", code, at, str(state)], stderr=subprocess.PIPE, text=True)
                 for _ in range(6)]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 6, errors


def test_lock_of_a_killed_run_is_reclaimed_and_the_run_shows_crashed(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", "steps:\n  - id: a\n    run: touch started; sleep 30\n")
    proc = project.spawn("run", "w", "-q")
    _wait_for_lock(project, "w", proc.pid)
    deadline = time.monotonic() + 20  # the lock is taken before the run is recorded: wait for the step
    while not (project.root / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.communicate()
    listed = json.loads(project.cli("runs", "list", "--format", "json").stdout)
    assert listed[0]["status"] == "crashed"
    project.write("workflows/w.yaml", "steps:\n  - id: a\n    run: 'true'\n")
    assert project.run("run", "w", "-q").exit_code == 0


def test_kill_9_then_resume_reruns_only_unverified_steps(project: ProjectDir) -> None:
    project.write("workflows/r.yaml", """
        steps:
          - id: first
            run: echo run >> first.log
            verify: [ { file_exists: first.log } ]
          - id: second
            needs: [first]
            run: |
              echo run >> second.log
              if [ ! -f go ]; then sleep 60; fi
    """)
    proc = project.spawn("run", "r", "-q")
    deadline = time.monotonic() + 20
    while not (project.root / "second.log").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    (project.root / "go").touch()
    resumed = project.run("run", "r", "--resume", "last", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert (project.root / "first.log").read_text() == "run\n"
    assert (project.root / "second.log").read_text() == "run\nrun\n"
    runs = json.loads(project.cli("runs", "list", "--format", "json").stdout)
    assert len(runs) == 1 and runs[0]["status"] == "succeeded"
    detail = json.loads(project.cli("runs", "show", "last", "--format", "json").stdout)
    second = next(s for s in detail["steps"] if s["step_id"] == "second")
    assert [(a["attempt"], a["status"]) for a in second["attempt_records"]] == [(1, "crashed"), (2, "succeeded")]
    first_step = next(s for s in detail["steps"] if s["step_id"] == "first")
    assert [a["status"] for a in first_step["attempt_records"]] == ["succeeded"]


def test_sigint_stops_children_marks_cancelled_and_exits_130(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", """
        steps:
          - id: long
            run: |
              sleep 120 &
              echo $! > child.pid
              wait
          - id: after
            needs: [long]
            run: "true"
    """)
    proc = project.spawn("run", "w", "-q")
    deadline = time.monotonic() + 20
    while not (project.root / "child.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, _ = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert not _alive(int((project.root / "child.pid").read_text()))
    listed = json.loads(project.cli("runs", "list", "--format", "json").stdout)
    assert listed[0]["status"] == "cancelled"


def test_corrupted_state_database_is_a_clear_error_and_is_left_untouched(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", "steps:\n  - id: a\n    run: 'true'\n")
    db = project.root / ".orchestr" / "state.db"
    db.parent.mkdir()
    garbage = b"this is not a database" * 100
    db.write_bytes(garbage)
    result = project.cli("run", "w")
    assert result.exit_code == 1
    assert "state database" in result.stderr and "left untouched" in result.stderr
    assert db.read_bytes() == garbage


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_state_dir_is_a_clear_error(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", "steps:\n  - id: a\n    run: 'true'\n")
    state = project.root / ".orchestr"
    state.mkdir()
    state.chmod(0o500)
    try:
        result = project.cli("run", "w")
    finally:
        state.chmod(0o700)
    assert result.exit_code == 1 and "not writable" in result.stderr


def test_uncreatable_state_dir_is_a_clear_error(project: ProjectDir) -> None:
    project.write("orchestr.yaml", "state_dir: /proc/orchestr-cannot-live-here\n")
    project.write("workflows/w.yaml", "steps:\n  - id: a\n    run: 'true'\n")
    result = project.cli("run", "w")
    assert result.exit_code == 1
    assert "cannot create state folder /proc/orchestr-cannot-live-here" in result.stderr


def test_locked_state_database_is_a_clear_error(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", "steps:\n  - id: a\n    run: 'true'\n")
    assert project.cli("run", "w").exit_code == 0
    holder = sqlite3.connect(project.root / ".orchestr" / "state.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:  # a busy database is waited on (ORCHESTR_STATE_BUSY_TIMEOUT, 300 s by default), then reported
        result = project.run("run", "w", "-q", env={"ORCHESTR_STATE_BUSY_TIMEOUT": "2"}, timeout=60)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 1
    assert "locked" in result.stderr and "Traceback" not in result.stderr


def test_plain_trace_in_ci_has_timestamped_lines(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", "steps:\n  - id: a\n    run: echo from-step\n")
    result = project.cli("run", "w", "-v")
    lines = result.stdout.splitlines()
    assert any(line.endswith("▶ a attempt 1") and line[:4].isdigit() for line in lines)
    assert any("│ a: from-step" in line for line in lines)
    quiet = project.cli("run", "w", "-q")
    assert "▶" not in quiet.stdout and "succeeded" in quiet.stdout


def test_quiet_summary_is_a_verdict_line_and_only_the_steps_that_did_not_succeed(project: ProjectDir) -> None:
    steps = ["steps:"] + [f"  - id: ok{i}\n    run: 'true'" for i in range(30)]
    steps += ["  - id: bad\n    run: exit 4", "  - id: after\n    needs: [bad]\n    run: 'true'"]
    project.write("workflows/w.yaml", "\n".join(steps) + "\n")
    quiet = project.cli("run", "w", "-q")
    assert quiet.exit_code == 1
    first = quiet.stdout.splitlines()[0]
    assert re.fullmatch(r"w · run \S+: failed \(exit 1\) · 30 succeeded, 1 failed, 1 skipped", first), first
    assert "bad" in quiet.stdout and "exited with code 4" in quiet.stdout and "after" in quiet.stdout
    assert "ok7" not in quiet.stdout
    full = project.cli("run", "w")
    assert "ok7" in full.stdout
