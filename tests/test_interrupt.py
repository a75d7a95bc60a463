"""Prompt interruption and no retry of permanent errors, with real parts only.

Model calls go through the official SDKs to the wire-protocol fake (tests/fakeapi.py), which holds a
reply as long as it is told and notices a client that gives up (`server.aborted`). MCP calls go to a
real stdio server (tests/mcp_sleeper.py); `run_command` runs real processes. SIGTERM goes to a real
`orchestr run` process. Bounds are generous (< 8 s for a 30 s call): the machine is loaded.
"""

from __future__ import annotations

import json
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic  # noqa: F401  (see below)
import openai  # noqa: F401
import pytest

from orchestr.interruption import Interrupted, Stop
from orchestr.providers import Endpoint, connect
from orchestr.providers.base import ModelRequest, ProviderError, UserMessage
from orchestr.providers.retrying import MAX_RETRY_AFTER_SECONDS, RetryingProvider
from orchestr.tools import mcp as _mcp_client  # noqa: F401  (see below)
from tests.conftest import ProjectDir
from tests.fakeapi import FakeLLMServer, Reply, Script, ToolCall

MODELS = {"anthropic": "anthropic:claude-sonnet-4-6", "openai": "openai:gpt-4.1"}
SLEEPER = Path(__file__).with_name("mcp_sleeper.py")
PROMPT_BOUND = 8.0  # seconds: "within 5 s", with room for a loaded 2-core machine
LONG = 30.0
# The SDKs and orchestr.tools.mcp are imported above, not by the first test's run that needs them:
# their import (a second or more on a loaded machine) would otherwise eat into its step timeout.


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


def _script(server: FakeLLMServer, provider: str) -> Script:
    return server.anthropic if provider == "anthropic" else server.openai


def _project(project: ProjectDir, provider: str, *, step: str = "timeout: 2s", tools: str = "[]",
             call_timeout: str = "60s") -> None:
    project.write("orchestr.yaml", f"""
        mcp_servers:
          sleeper:
            command: "{sys.executable}"
            args: ["{SLEEPER}", "{project.root / 'server.pid'}"]
            reach: {{}}
            call_timeout: {call_timeout}
            unsafe_no_sandbox: true  # it writes its pid where the test can read it (outside a PID namespace)
    """)
    project.write("contexts/ops.yaml", """
        title: Ops
        description: The operations desk.
        permissions:
          tools: [run_command, http_request, "sleeper.*"]
          commands: ["bash -c"]
          hosts: ["127.0.0.1"]
    """)
    project.write("workflows/slow.yaml", f"""
        name: slow
        context: ops
        agents:
          clerk:
            model: "{MODELS[provider]}"
            instructions: You wait for things.
            tools: {tools}
            max_turns: 4
        steps:
          - id: wait
            agent: clerk
            prompt: Wait for it.
            {step}
    """)


def _detail(project: ProjectDir) -> dict[str, Any]:
    shown = project.cli("runs", "show", "last", "--format", "json")
    assert shown.exit_code == 0, shown.output
    detail: dict[str, Any] = json.loads(shown.stdout)
    return detail


def _step(project: ProjectDir) -> dict[str, Any]:
    step: dict[str, Any] = _detail(project)["steps"][0]
    return step


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _gone_within(pid: int, seconds: float) -> bool:
    end = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def _wait_for(condition: Any, seconds: float = 20.0) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out waiting for the run to get going"
        time.sleep(0.05)


def _sigterm_run(project: ProjectDir, server: FakeLLMServer, started: Any,
                 signum: int = signal.SIGTERM) -> tuple[int, float, str]:
    """Start `orchestr run slow` for real, signal it once `started()`, return (rc, seconds, output)."""
    proc = project.spawn("run", "slow", env=server.env())
    try:
        _wait_for(lambda: started() or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.3)  # well inside the call
        began = time.monotonic()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
        return proc.returncode, time.monotonic() - began, out + err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# --- model calls ------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_30s_model_reply_is_cut_by_a_2s_step_timeout(project: ProjectDir, server: FakeLLMServer,
                                                       provider: str) -> None:
    _project(project, provider)
    _script(server, provider).enqueue(Reply.text("too late", delay=LONG))
    began = time.monotonic()
    result = project.cli("run", "slow", env=server.env())
    elapsed = time.monotonic() - began
    assert result.exit_code == 1, result.output
    assert elapsed < PROMPT_BOUND, f"the step ran {elapsed:.1f}s"
    step = _step(project)
    assert step["status"] == "failed" and step["reason"] == "timed out after 2s"
    assert [a["status"] for a in step["attempt_records"]] == ["timeout"]
    _wait_for(lambda: len(server.aborted) == 1, 5)  # the request was aborted, not left waiting


@pytest.mark.parametrize(("provider", "signum"), [("anthropic", signal.SIGTERM), ("openai", signal.SIGTERM),
                                                  ("anthropic", signal.SIGINT)])
def test_sigterm_during_a_model_reply_exits_130_at_once_and_records_cancelled(
        project: ProjectDir, server: FakeLLMServer, provider: str, signum: int) -> None:
    _project(project, provider, step="")
    _script(server, provider).enqueue(Reply.text("too late", delay=LONG))
    rc, elapsed, output = _sigterm_run(project, server, lambda: len(server.requests) == 1, signum)
    assert rc == 130, output
    assert elapsed < PROMPT_BOUND, f"exit took {elapsed:.1f}s after {signal.Signals(signum).name}"
    detail = _detail(project)
    assert detail["status"] == "cancelled"
    assert detail["steps"][0]["status"] == "cancelled"
    assert [a["status"] for a in detail["steps"][0]["attempt_records"]] == ["cancelled"]
    _wait_for(lambda: len(server.aborted) == 1, 5)


def test_a_schedule_deadline_cuts_a_30s_model_reply(project: ProjectDir, server: FakeLLMServer) -> None:
    _project(project, "anthropic", step="")
    with (project.root / "workflows/slow.yaml").open("a") as handle:
        # 6 s: room for the drainer to start and send the request on a loaded machine
        handle.write('schedule: { cron: "0 * * * *", deadline: 6s }\n')
    server.anthropic.enqueue(Reply.text("too late", delay=LONG))
    began = time.monotonic()
    result = project.run("tick", "--now", "2026-12-02T03:00:20Z", "--wait", env=server.env())
    elapsed = time.monotonic() - began
    assert result.exit_code == 1, result.output
    assert elapsed < 6 + PROMPT_BOUND, f"the run took {elapsed:.1f}s"
    assert len(server.requests) == 1, "the model was never asked: the deadline came first"
    detail = _detail(project)
    assert detail["status"] == "timed-out"
    assert detail["steps"][0]["status"] == "cancelled"  # not `succeeded` once the reply would come
    assert detail["steps"][0]["reason"] == "the schedule's deadline passed"
    _wait_for(lambda: len(server.aborted) == 1, 5)


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_an_unknown_model_is_asked_once_and_fails_with_the_providers_message(
        project: ProjectDir, server: FakeLLMServer, provider: str) -> None:
    _project(project, provider, step="retry: { attempts: 3, backoff: 1s }")
    _script(server, provider).enqueue(Reply.not_found("claude-nope"), Reply.text("never asked"))
    result = project.cli("run", "slow", env=server.env())
    assert result.exit_code == 1, result.output
    assert len(server.requests) == 1  # neither the provider layer nor the step retried it
    step = _step(project)
    assert step["status"] == "failed" and step["attempts"] == 1
    assert f"{provider}: HTTP 404: model: claude-nope not found" in step["reason"]


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_retry_after_that_would_outlive_the_step_timeout_fails_now(
        project: ProjectDir, server: FakeLLMServer, provider: str) -> None:
    _project(project, provider, step="timeout: 5s")
    _script(server, provider).enqueue(Reply.error(429, "slow down", headers={"retry-after": "30"}),
                                      Reply.text("never asked"))
    began = time.monotonic()
    result = project.cli("run", "slow", env=server.env())
    assert time.monotonic() - began < PROMPT_BOUND
    assert result.exit_code == 1, result.output
    assert len(server.requests) == 1
    reason = _step(project)["reason"]
    assert "HTTP 429: slow down" in reason
    assert "not retried: waiting 30s would pass the step's timeout of 5s" in reason


def _provider(server: FakeLLMServer, kind: str) -> Any:
    url = server.anthropic_base_url if kind == "anthropic" else server.openai_base_url
    return connect(Endpoint(kind, kind, "test-key", url), timeout=300)


REQUEST = ModelRequest(model="m", context="", instructions="", messages=(UserMessage("hi"),))


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_retry_after_is_capped(server: FakeLLMServer, provider: str) -> None:
    _script(server, provider).enqueue(Reply.error(429, "come back in an hour", headers={"retry-after": "3600"}))
    inner = _provider(server, provider)
    cancel = threading.Event()
    waits: list[float] = []

    def on_retry(exc: ProviderError, number: int, wait: float, took_ms: float) -> None:
        waits.append(wait)
        cancel.set()  # the test need not wait the minute out: cancel ends the wait at once

    try:
        with pytest.raises(Interrupted):
            RetryingProvider(inner, on_retry=on_retry).complete(REQUEST, stop=Stop(cancel))
    finally:
        inner.close()
    assert waits == [MAX_RETRY_AFTER_SECONDS]


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_malformed_reply_is_retried_then_reported_clearly(server: FakeLLMServer, provider: str) -> None:
    _script(server, provider).enqueue(Reply.malformed(), Reply.text("fine now"), Reply.malformed(), Reply.malformed())
    inner = _provider(server, provider)
    try:
        retrying = RetryingProvider(inner, attempts=2, initial=0.01)
        assert retrying.complete(REQUEST).text == "fine now"
        with pytest.raises(ProviderError, match=f"{provider}: malformed reply from the API .*gave up after 2 attempts"):
            retrying.complete(REQUEST)
    finally:
        inner.close()
    assert len(server.requests) == 4


# --- tool calls -------------------------------------------------------------------------------


def _sleep_call() -> Reply:
    return Reply.tool_calls(ToolCall("sleeper__sleep", {"seconds": LONG}))


def _command_call() -> Reply:
    script = "sleep 30 & echo $! > child.pid; wait"  # a grandchild, as a build would start one
    return Reply.tool_calls(ToolCall("run_command", {"argv": ["bash", "-c", script]}))


def _pid(project: ProjectDir, name: str) -> int:
    return int((project.root / name).read_text())


def test_a_30s_mcp_call_is_cut_by_a_4s_step_timeout(project: ProjectDir, server: FakeLLMServer) -> None:
    # 4 s, not 2: the server (a Python process importing the SDK) may take 2 s to start on a loaded
    # machine, and the timeout must fall inside the tool call.
    _project(project, "anthropic", step="timeout: 4s", tools='["sleeper.*"]')
    server.anthropic.enqueue(_sleep_call(), Reply.text("never asked"))
    began = time.monotonic()
    result = project.cli("run", "slow", env=server.env())
    elapsed = time.monotonic() - began
    assert result.exit_code == 1, result.output
    assert elapsed < 4 + PROMPT_BOUND, f"the run took {elapsed:.1f}s"
    step = _step(project)
    assert step["status"] == "failed" and step["reason"] == "timed out after 4s"
    calls = step["attempt_records"][0]["tool_calls"]
    assert [(c["tool"], c["outcome"]) for c in calls] == [("sleeper.sleep", "error")]
    assert not _alive(_pid(project, "server.pid")), "the MCP server outlived the run"


def test_sigterm_during_a_mcp_call_exits_at_once_and_stops_the_server(project: ProjectDir,
                                                                      server: FakeLLMServer) -> None:
    _project(project, "anthropic", step="", tools='["sleeper.*"]')
    server.anthropic.enqueue(_sleep_call(), Reply.text("never asked"))
    pid_file = project.root / "server.pid"
    rc, elapsed, output = _sigterm_run(project, server, lambda: len(server.requests) == 1 and pid_file.exists())
    assert rc == 130, output
    assert elapsed < PROMPT_BOUND, f"exit took {elapsed:.1f}s after SIGTERM"
    assert _step(project)["status"] == "cancelled"
    assert _gone_within(_pid(project, "server.pid"), 2), "the MCP server outlived the run"


def test_a_30s_command_is_cut_by_a_2s_step_timeout_with_its_children(project: ProjectDir,
                                                                     server: FakeLLMServer) -> None:
    _project(project, "openai", tools="[run_command]")
    server.openai.enqueue(_command_call(), Reply.text("never asked"))
    began = time.monotonic()
    result = project.cli("run", "slow", env=server.env())
    elapsed = time.monotonic() - began
    assert result.exit_code == 1, result.output
    assert elapsed < PROMPT_BOUND, f"the run took {elapsed:.1f}s"
    step = _step(project)
    assert step["status"] == "failed" and step["reason"] == "timed out after 2s"
    assert not _alive(_pid(project, "child.pid")), "the command's child outlived the step"


def test_sigterm_during_a_command_exits_at_once_and_leaves_no_orphan(project: ProjectDir,
                                                                    server: FakeLLMServer) -> None:
    _project(project, "openai", step="", tools="[run_command]")
    server.openai.enqueue(_command_call(), Reply.text("never asked"))
    child = project.root / "child.pid"
    rc, elapsed, output = _sigterm_run(project, server, lambda: child.exists() and child.read_text().strip())
    assert rc == 130, output
    assert elapsed < PROMPT_BOUND, f"exit took {elapsed:.1f}s after SIGTERM"
    assert _step(project)["status"] == "cancelled"
    assert _gone_within(_pid(project, "child.pid"), 2), "the command's child outlived the run"


def test_a_slow_http_request_is_cut_by_the_step_timeout(project: ProjectDir, server: FakeLLMServer) -> None:
    # The agent talks OpenAI; its http_request goes to the fake's Anthropic endpoint, held 30 s.
    _project(project, "openai", tools="[http_request]")
    url = f"{server.anthropic_base_url}/v1/messages"
    server.openai.enqueue(Reply.tool_calls(ToolCall("http_request", {"method": "POST", "url": url, "body": "{}"})),
                          Reply.text("never asked"))
    server.anthropic.enqueue(Reply.text("too late", delay=LONG))
    began = time.monotonic()
    result = project.cli("run", "slow", env=server.env())
    assert time.monotonic() - began < PROMPT_BOUND
    assert result.exit_code == 1, result.output
    assert _step(project)["reason"] == "timed out after 2s"
    _wait_for(lambda: len(server.aborted) == 1, 5)  # its socket was shut, not left to the read timeout


# --- permanent errors in the engine -----------------------------------------------------------


def test_an_expression_error_in_env_is_not_retried(project: ProjectDir) -> None:
    project.write("workflows/divide.yaml", """
        name: divide
        inputs:
          n: { type: integer, default: 0 }
        steps:
          - id: divide
            run: echo "$RATIO" >> ran.txt
            env: { RATIO: "${{ 10 // inputs.n }}" }
            retry: { attempts: 3, backoff: 1s }
    """)
    result = project.cli("run", "divide")
    assert result.exit_code == 1, result.output
    step = _step(project)
    assert step["status"] == "failed" and step["attempts"] == 1
    assert step["reason"].startswith("env: `10 // inputs.n`") and "division" in step["reason"]
    assert not (project.root / "ran.txt").exists()


def test_a_check_whose_schema_file_is_missing_is_not_retried(project: ProjectDir) -> None:
    project.write("workflows/report.yaml", """
        name: report
        steps:
          - id: report
            run: |
              echo '{"total": 3}' > report.json
              echo ran >> ran.txt
            verify:
              - json_schema: { path: report.json, schema: schemas/report.schema.json }
            retry: { attempts: 3, backoff: 1s }
    """)
    result = project.cli("run", "report")
    assert result.exit_code == 3, result.output
    step = _step(project)
    assert step["status"] == "unverified" and step["attempts"] == 1
    assert "cannot load the schema" in step["reason"]
    assert (project.root / "ran.txt").read_text() == "ran\n"


def test_a_failing_check_that_can_pass_is_still_retried(project: ProjectDir) -> None:
    project.write("workflows/flaky.yaml", """
        name: flaky
        steps:
          - id: flaky
            run: echo ran >> ran.txt
            verify:
              - file_contains: { path: ran.txt, pattern: "ran\\\\nran" }
            retry: { attempts: 3, backoff: 0.1s }
    """)
    result = project.cli("run", "flaky")
    assert result.exit_code == 0, result.output
    assert _step(project)["attempts"] == 2


def test_an_expression_error_in_a_prompt_is_not_retried(project: ProjectDir, server: FakeLLMServer) -> None:
    _project(project, "anthropic", step="retry: { attempts: 3, backoff: 1s }")
    path = project.root / "workflows/slow.yaml"
    text = path.read_text().replace("prompt: Wait for it.", 'prompt: "Wait ${{ 10 // inputs.n }} minutes."')
    path.write_text(text.replace("agents:", "inputs:\n  n: { type: integer, default: 0 }\nagents:", 1))
    result = project.cli("run", "slow", env=server.env())
    assert result.exit_code == 1, result.output
    step = _step(project)
    assert step["attempts"] == 1 and step["reason"].startswith("prompt: `10 // inputs.n`")
    assert server.requests == []


def test_a_tool_call_past_the_servers_call_timeout_is_an_error_the_model_reads(
        project: ProjectDir, server: FakeLLMServer) -> None:
    _project(project, "anthropic", step="timeout: 60s", tools='["sleeper.*"]', call_timeout="2s")
    server.anthropic.enqueue(_sleep_call(), Reply.text("the tool was too slow"))
    began = time.monotonic()
    result = project.cli("run", "slow", env=server.env())
    assert time.monotonic() - began < 2 + 3 + PROMPT_BOUND  # server start-up, the 2 s, the reply
    assert result.exit_code == 0, result.output
    calls = _step(project)["attempt_records"][0]["tool_calls"]
    assert [(c["tool"], c["outcome"]) for c in calls] == [("sleeper.sleep", "error")]
    told = server.requests[-1].body["messages"][-1]["content"][0]
    assert "timed out after 2s" in json.dumps(told)


def test_a_server_that_crashes_mid_call_is_named_and_started_again_for_the_next_call(
        project: ProjectDir, server: FakeLLMServer) -> None:
    _project(project, "anthropic", step="timeout: 60s", tools='["sleeper.*"]')
    server.anthropic.enqueue(Reply.tool_calls(ToolCall("sleeper__whoami", {})),
                             Reply.tool_calls(ToolCall("sleeper__crash", {})),
                             Reply.tool_calls(ToolCall("sleeper__whoami", {})),
                             Reply.text("done"))
    result = project.cli("run", "slow", env=server.env())
    assert result.exit_code == 0, result.output
    calls = _step(project)["attempt_records"][0]["tool_calls"]
    assert [(c["tool"], c["outcome"]) for c in calls] == [
        ("sleeper.whoami", "ok"), ("sleeper.crash", "error"), ("sleeper.whoami", "ok")]
    results = [json.dumps(r.body["messages"][-1]["content"]) for r in server.requests[1:4]]
    assert "crashed during the call" in results[1]
    first, again = (re.search(r"\b(\d{2,})\b", text) for text in (results[0], results[2]))
    assert first and again and first.group(1) != again.group(1)  # a new server process answered
