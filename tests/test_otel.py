"""OpenTelemetry: spans a real OTLP/HTTP endpoint receives from a run, and what never loads the SDK."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import ProjectDir
from tests.fakeapi import FakeLLMServer, Reply, ToolCall
from tests.otlp_receiver import OtlpReceiver

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


def _project(project: ProjectDir) -> None:
    project.write("contexts/acme.yaml", """
        title: Acme
        permissions:
          tools: [read_file, write_file]
          write: ["out/**"]
    """)
    project.write("workflows/triage.yaml", """
        name: triage
        secrets: [TOKEN]
        context: acme
        agents:
          triager:
            model: "anthropic:claude-sonnet-4-6"
            instructions: You triage.
            tools: [read_file, write_file]
        steps:
          - id: fetch
            run: echo fetched
          - id: triage
            needs: [fetch]
            agent: triager
            prompt: Write out/triage.json for ${{ env.TOKEN }}.
            verify:
              - file_exists: out/triage.json
    """)


def _run(project: ProjectDir, server: FakeLLMServer, receiver: OtlpReceiver, **extra: str) -> None:
    server.anthropic.enqueue(
        Reply.tool_calls(ToolCall("write_file", {"path": "out/triage.json", "content": "token s3cr3t-v4lue"})),
        Reply.tool_calls(ToolCall("write_file", {"path": "/etc/passwd", "content": "x"})),
        Reply.text("done"),
    )
    env = {**server.env(), "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint, "TRACEPARENT": TRACEPARENT,
           "TOKEN": "s3cr3t-v4lue", **extra}
    result = project.cli("run", "triage", env=env)
    assert result.exit_code == 0, result.output


def test_a_run_exports_genai_spans_under_the_callers_trace(project: ProjectDir, server: FakeLLMServer) -> None:
    _project(project)
    with OtlpReceiver() as receiver:
        _run(project, server, receiver)
    assert receiver.paths and all(p == "/v1/traces" for p in receiver.paths)
    (root,) = receiver.named("invoke_workflow ")
    assert root.name == "invoke_workflow triage" and root.trace_id == TRACE_ID
    assert root.parent_id == "00f067aa0ba902b7"  # the CI job's span
    assert root.attributes["orchestr.run.status"] == "succeeded"
    assert {s.trace_id for s in receiver.spans} == {TRACE_ID}
    steps = {s.attributes["orchestr.step.id"]: s for s in receiver.named("step ")}
    assert set(steps) == {"fetch", "triage"} and all(s.parent_id == root.span_id for s in steps.values())
    assert steps["triage"].attributes["orchestr.step.status"] == "succeeded"
    (agent,) = receiver.named("invoke_agent ")
    assert agent.name == "invoke_agent triager" and agent.parent_id == steps["triage"].span_id
    chats = receiver.named("chat ")
    assert [c.name for c in chats] == ["chat claude-sonnet-4-6"] * 3
    for chat in chats:
        assert chat.parent_id == agent.span_id
        assert chat.attributes["gen_ai.provider.name"] == "anthropic"
        assert chat.attributes["gen_ai.request.model"] == "claude-sonnet-4-6"
        assert chat.attributes["gen_ai.usage.input_tokens"] > 0
        assert chat.attributes["gen_ai.usage.output_tokens"] > 0
        assert "gen_ai.usage.cache_read.input_tokens" in chat.attributes
        assert chat.start_ns < chat.end_ns
    tools = receiver.named("execute_tool ")
    assert [t.attributes["gen_ai.tool.name"] for t in tools] == ["write_file", "write_file"]
    assert [t.status_code for t in tools] == [0, 2]  # ok, then a refusal (STATUS_CODE_ERROR)
    assert all("gen_ai.tool.call.arguments" not in t.attributes for t in tools)  # not opted in
    assert "gen_ai.input.messages" not in agent.attributes and "gen_ai.system_instructions" not in agent.attributes
    (check,) = receiver.named("verify ")
    assert check.attributes["orchestr.verify.check"] == "file_exists" and check.attributes["orchestr.verify.passed"]
    assert check.parent_id in {agent.span_id, steps["triage"].span_id}


def test_prompts_and_tool_arguments_are_exported_redacted_only_when_opted_in(project: ProjectDir, server: FakeLLMServer) -> None:
    _project(project)
    with OtlpReceiver() as receiver:
        _run(project, server, receiver, OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT="true")
    first = receiver.named("execute_tool ")[0]
    args = json.loads(first.attributes["gen_ai.tool.call.arguments"])
    assert args == {"path": "out/triage.json", "content": "token ***"}
    (agent,) = receiver.named("invoke_agent ")
    (message,) = json.loads(agent.attributes["gen_ai.input.messages"])
    assert message["role"] == "user" and "Write out/triage.json for ***." in message["parts"][0]["content"]
    assert json.loads(agent.attributes["gen_ai.system_instructions"]) == [{"type": "text", "content": "You triage."}]
    assert all("s3cr3t-v4lue" not in json.dumps(s.attributes) for s in receiver.spans)


@pytest.mark.parametrize("command", [["validate"], ["tick", "--now", "2026-11-24T08:16:00Z"]])
def test_validate_and_an_idle_tick_do_not_import_the_sdk(project: ProjectDir, command: list[str]) -> None:
    project.write("workflows/job.yaml", """
        name: job
        schedule: { cron: "0 3 * * *", timezone: UTC }
        steps: [ { id: work, run: "true" } ]
    """)
    code = ("import sys; from orchestr.cli import app\n"
            f"try:\n    app({command!r})\nexcept SystemExit as e:\n    assert e.code == 0, e\n"
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", code], cwd=project.root, capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_an_unconfigured_run_does_not_import_the_sdk(project: ProjectDir) -> None:
    project.write("workflows/job.yaml", """
        name: job
        steps: [ { id: work, run: "true" } ]
    """)
    code = ("import sys; from orchestr.cli import app\n"
            "try:\n    app(['run', 'job', '-q'])\nexcept SystemExit as e:\n    assert e.code == 0, e\n"
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=project.root, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
