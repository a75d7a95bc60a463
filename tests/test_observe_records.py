"""Complete records (issue 15): what `runs show --format json` keeps of an agent's work.

Scripted runs against the fake wire-protocol server through the official SDKs: denials and errors
keep the text the model was told, retried model calls their own durations, and an attempt that ran
out of turns keeps its failing checks and names them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import ProjectDir
from tests.fakeapi import FakeLLMServer, Reply, ToolCall


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


def _project(project: ProjectDir, *, max_turns: int = 3, attempts: int = 1) -> None:
    project.write("contexts/acme.yaml", """
        title: Acme
        permissions:
          tools: [read_file, write_file]
          write: ["out/support/**"]
    """)
    project.write("workflows/triage.yaml", f"""
        name: triage
        context: acme
        agents:
          triager:
            model: "anthropic:claude-sonnet-4-6"
            instructions: You triage.
            tools: [read_file, write_file]
            max_turns: {max_turns}
        steps:
          - id: triage
            agent: triager
            prompt: Write out/support/triage.json.
            retry: {{ attempts: {attempts}, backoff: 10ms }}
            verify:
              - file_exists: out/support/triage.json
    """)


def _show(project: ProjectDir) -> dict[str, Any]:
    shown = project.cli("runs", "show", "last", "--format", "json")
    assert shown.exit_code == 0, shown.output
    detail: dict[str, Any] = json.loads(shown.stdout)
    return detail


def test_denials_errors_and_max_turns_are_kept_with_what_the_model_was_told(project: ProjectDir,
                                                                            server: FakeLLMServer) -> None:
    _project(project)
    server.anthropic.enqueue(
        Reply.tool_calls(ToolCall("write_file", {"path": "secrets/x.json", "content": "{}"})),
        Reply.tool_calls(ToolCall("read_file", {"path": "data/missing.json"})),
        Reply.text("All done."),
    )
    result = project.cli("run", "triage", env=server.env())
    assert result.exit_code == 1, result.output
    detail = _show(project)
    (step,) = detail["steps"]
    assert "max_turns (3) reached" in step["reason"]
    assert "file_exists out/support/triage.json" in step["reason"]  # the failing check is named
    (attempt,) = step["attempt_records"]
    assert [(c["check"], c["passed"]) for c in attempt["verification"]] == [("file_exists", False)]
    denied, errored = attempt["tool_calls"]
    assert denied["outcome"] == "denied" and "secrets/x.json" in denied["message"]
    assert errored["outcome"] == "error" and errored["message"]
    # exactly what went back to the model in the tool result
    sent = json.dumps(server.anthropic.requests[1].body["messages"][-1])
    assert json.dumps(denied["message"])[1:-1] in sent
    assert [c["turn"] for c in attempt["model_calls"]] == [1, 2, 3]
    assert all(c["provider"] == "anthropic" and c["model"] == "claude-sonnet-4-6" for c in attempt["model_calls"])
    kinds = [e["event"] for e in detail["events"]]
    assert kinds[0] == "run.started" and kinds[-1] == "run.finished"
    assert kinds.count("tool.call") == 2 and kinds.count("model.call") == 3
    tool_events = [e for e in detail["events"] if e["event"] == "tool.call"]
    assert tool_events[0]["message"] == denied["message"]
    text = project.cli("runs", "show", "last")
    assert "-> denied" in text.stdout and "model anthropic:claude-sonnet-4-6 turn 1" in text.stdout


def test_each_retried_model_call_records_its_own_duration(project: ProjectDir, server: FakeLLMServer) -> None:
    _project(project)
    server.anthropic.enqueue(
        Reply.error(429, "slow down", headers={"retry-after": "0.05"}, delay=1.0),
        Reply.tool_calls(ToolCall("write_file", {"path": "out/support/triage.json", "content": "{}"})),
        Reply.text("done"),
    )
    result = project.cli("run", "triage", env=server.env())
    assert result.exit_code == 0, result.output
    calls = _show(project)["steps"][0]["attempt_records"][0]["model_calls"]
    failed, first_ok, second_ok = calls
    assert failed["error"] and failed["retry_in"] == 0.05 and failed["retries"] == 0
    assert failed["duration_ms"] >= 1000  # the slow refusal's own time
    assert first_ok["retries"] == 1 and "error" not in first_ok
    assert first_ok["duration_ms"] < failed["duration_ms"]  # not the cumulative time
    assert second_ok["retries"] == 0


def test_every_attempt_keeps_its_verification(project: ProjectDir, server: FakeLLMServer) -> None:
    _project(project, max_turns=1, attempts=2)
    server.anthropic.enqueue(Reply.text("done"), Reply.text("done again"))
    result = project.cli("run", "triage", env=server.env())
    assert result.exit_code == 1, result.output
    attempts = _show(project)["steps"][0]["attempt_records"]
    assert len(attempts) == 2
    for attempt in attempts:
        assert [(c["check"], c["passed"]) for c in attempt["verification"]] == [("file_exists", False)]
        assert "failing: file_exists out/support/triage.json" in attempt["error"]


def test_a_running_run_is_shown_without_exit_none(project: ProjectDir) -> None:
    project.write("workflows/slow.yaml", """
        name: slow
        steps: [ { id: wait, run: "sleep 30" } ]
    """)
    proc = project.spawn("run", "slow")
    try:
        import time

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            shown = project.cli("runs", "show", "last")
            if "running" in shown.stdout:
                break
            time.sleep(0.2)
        assert "running" in shown.stdout and "exit None" not in shown.stdout
        assert "orchestr logs" in shown.stdout
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
