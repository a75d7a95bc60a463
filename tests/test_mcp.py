"""MCP servers' tools: the hub against real stdio servers, and agent steps using them end to end.

The reference server `mcp-server-time` lives in its own virtualenv (`make test` installs it and names
it in ORCHESTR_MCP_TIME); the tests that need it skip without it. A small MCP server written here,
built on the SDK in our own virtualenv, covers what the time server cannot do: be slow, answer with
an image, read its environment.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from orchestr.models import McpServerSpec
from orchestr.providers.base import Image
from orchestr.tools.builtin import ServerLog
from orchestr.tools.mcp import McpError, McpHub
from tests.conftest import ProjectDir
from tests.fakeapi import FakeLLMServer, Reply, Script, ToolCall

TIME_SERVER = os.environ.get("ORCHESTR_MCP_TIME", "")
needs_time_server = pytest.mark.skipif(
    not TIME_SERVER, reason="ORCHESTR_MCP_TIME is unset: `make test` installs mcp-server-time and sets it")
MODELS = {"anthropic": "anthropic:claude-sonnet-4-6", "openai": "openai:gpt-4.1"}

FAKE_SERVER = f"""\
#!{sys.executable}
import os, time
import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, ImageContent, ToolExecution

class Fake(MCPServer):
    async def list_tools(self):
        # `background` runs only as a task, a capability orchestr does not take up
        tools = await super().list_tools()
        required = ToolExecution(task_support="required")
        return [t.model_copy(update={{"execution": required}}) if t.name == "background" else t for t in tools]

server = Fake("fake")

@server.tool()
def background() -> str:
    \"\"\"Runs only as a task.\"\"\"
    return "ran"

@server.tool()
async def warn(ctx: Context) -> str:
    \"\"\"Log at info, warning and error, then answer.\"\"\"
    await ctx.info("just so you know")
    await ctx.warning("disk almost full")
    await ctx.log("error", {{"code": 7, "what": "quota"}}, logger_name="crm.sync")
    return "warned"

@server.tool()
def snapshot() -> CallToolResult:
    \"\"\"A 120 KB image, mirrored in structuredContent as some servers do.\"\"\"
    data = "iVBO" * 40_000
    return CallToolResult(content=[ImageContent(type="image", data=data, mime_type="image/png")],
                          structured_content={{"image": data, "name": "shot.png"}})

@server.tool()
def report() -> CallToolResult:
    \"\"\"Only structured content, with a blob inside.\"\"\"
    return CallToolResult(content=[], structured_content={{"blob": "QUJD" * 1_000, "rows": 3}})

@server.tool()
def client(ctx: Context) -> str:
    \"\"\"The client's name and version, as it introduced itself.\"\"\"
    info = ctx.session.client_params.client_info
    return f"{{info.name}} {{info.version}}"

@server.tool()
def fail() -> str:
    \"\"\"Always fails.\"\"\"
    from mcp.server.mcpserver.exceptions import ToolError
    raise ToolError("the CRM said no")

@server.tool()
async def meet(me: str, other: str) -> str:
    \"\"\"Arrive (a file named `me`), then wait up to 10 s for `other` to arrive too.\"\"\"
    open(me, "w").close()
    for _ in range(200):
        if os.path.exists(other):
            return "met"
        await anyio.sleep(0.05)
    return "alone"

@server.tool()
def slow(seconds: float) -> str:
    \"\"\"Sleep, then answer.\"\"\"
    time.sleep(seconds)
    return "slept"

@server.tool()
def picture() -> list[ImageContent]:
    \"\"\"A three-byte PNG.\"\"\"
    return [ImageContent(type="image", data="AAEC", mime_type="image/png")]

@server.tool()
def where() -> str:
    \"\"\"The server's working directory and greeting.\"\"\"
    return os.getcwd() + " " + os.environ.get("GREETING", "-")

@server.tool()
def variable(name: str) -> str:
    \"\"\"One variable of the server's environment, or '-' when it is unset.\"\"\"
    return os.environ.get(name, "-")

server.run()
"""


def _time_spec(*args: str) -> McpServerSpec:
    return McpServerSpec(command=TIME_SERVER, args=args or ("--local-timezone", "UTC"))


def _install_fake_server(root: Path) -> None:
    script = root / "bin" / "fake-mcp"
    script.parent.mkdir()
    script.write_text(FAKE_SERVER)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[McpHub]:
    _install_fake_server(tmp_path)
    servers = {"fake": McpServerSpec(command="bin/fake-mcp", env={"GREETING": "hello"}),
               "ghost": McpServerSpec(command="no-such-mcp-server", args=("--serve",))}
    if TIME_SERVER:
        servers |= {"time": _time_spec(), "broken": _time_spec("--no-such-flag")}
    hub = McpHub(servers, tmp_path)
    yield hub
    hub.close()


def _children(marker: str) -> list[int]:
    """Live or unreaped child processes of this one whose command line contains `marker`."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("needs /proc")
    found = []
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        if ppid == os.getpid() and marker in cmdline:
            found.append(int(entry.name))
    return found


# --- the hub ----------------------------------------------------------------------------------


@needs_time_server
def test_lists_the_time_servers_tools_as_server_dot_tool(hub: McpHub) -> None:
    tools = {t.name: t for t in hub.tools("time")}
    assert set(tools) == {"time.get_current_time", "time.convert_time"}
    current = tools["time.get_current_time"]
    assert current.description and current.input_schema["required"] == ["timezone"]
    assert hub.tools("time") == list(tools.values())  # listed once, then cached


@needs_time_server
def test_a_call_returns_the_servers_real_answer(hub: McpHub) -> None:
    result = hub.call("time.get_current_time", {"timezone": "Europe/Berlin"}, timeout=30)
    assert result.outcome == "ok", result.content
    answer = json.loads(result.content)
    assert answer["timezone"] == "Europe/Berlin"
    moment = datetime.fromisoformat(answer["datetime"])
    assert moment.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
    assert abs(moment - datetime.now(UTC)) < timedelta(minutes=5)


@needs_time_server
def test_a_tools_failure_is_an_error_result(hub: McpHub) -> None:
    bad_zone = hub.call("time.get_current_time", {"timezone": "Mars/Olympus_Mons"}, timeout=30)
    assert bad_zone.outcome == "error" and "Invalid timezone" in bad_zone.content
    unknown = hub.call("time.get_the_weather", {}, timeout=30)
    assert unknown.outcome == "error" and "Unknown tool: get_the_weather" in unknown.content
    assert hub.call("time.get_current_time", {"timezone": "UTC"}, timeout=30).outcome == "ok"


def test_a_server_whose_command_does_not_exist_is_an_mcp_error(hub: McpHub) -> None:
    with pytest.raises(McpError, match=r"^MCP server 'ghost' \(no-such-mcp-server --serve\) failed to start: "
                                       r"command not found: no-such-mcp-server$"):
        hub.tools("ghost")
    result = hub.call("ghost.anything", {}, timeout=5)
    assert result.outcome == "error" and "MCP server 'ghost'" in result.content
    with pytest.raises(McpError, match="unknown MCP server 'nobody'"):
        hub.tools("nobody")


@needs_time_server
def test_a_server_that_exits_at_once_is_an_mcp_error_with_its_stderr(hub: McpHub) -> None:
    with pytest.raises(McpError, match=r"MCP server 'broken' .* failed to start: .*unrecognized arguments: "
                                       r"--no-such-flag"):
        hub.tools("broken")


@needs_time_server
def test_close_leaves_no_child_process(hub: McpHub) -> None:
    assert hub.call("time.get_current_time", {"timezone": "UTC"}, timeout=30).outcome == "ok"
    [pid] = _children(TIME_SERVER)
    hub.close()
    assert _children(TIME_SERVER) == []
    assert not Path(f"/proc/{pid}").exists()  # stopped and reaped


@needs_time_server
def test_a_server_that_dies_gives_error_results(hub: McpHub) -> None:
    hub.tools("time")
    [pid] = _children(TIME_SERVER)
    os.kill(pid, signal.SIGKILL)
    result = hub.call("time.get_current_time", {"timezone": "UTC"}, timeout=30)
    assert result.outcome == "error" and "MCP server 'time'" in result.content and "crashed during the call" in result.content


def test_a_slow_call_times_out_and_the_server_stays_usable(hub: McpHub) -> None:
    slow = hub.call("fake.slow", {"seconds": 30}, timeout=0.5)
    assert slow.outcome == "error" and slow.content == "timed out after 0.5s"
    assert hub.call("fake.slow", {"seconds": 0}, timeout=30).content == "slept"


def test_an_image_is_named_in_the_text_and_kept_as_an_image(hub: McpHub) -> None:
    result = hub.call("fake.picture", {}, timeout=30)
    assert result.content == "[image/png, 3 bytes]"
    assert result.images == (Image("image/png", "AAEC"),)


def test_structured_content_never_repeats_a_blob_the_model_already_has(hub: McpHub) -> None:
    mirrored = hub.call("fake.snapshot", {}, timeout=30)
    assert mirrored.content == "[image/png, 120000 bytes]" and len(mirrored.images) == 1
    alone = hub.call("fake.report", {}, timeout=30)  # nothing else speaks: shown, its blob by size
    assert json.loads(alone.content) == {"blob": "[3000 bytes of base64]", "rows": 3}


def test_the_client_introduces_itself_as_orchestr_with_its_version(hub: McpHub) -> None:
    from orchestr import __version__

    assert hub.call("fake.client", {}, timeout=30).content == f"orchestr {__version__}"


def test_a_tool_that_runs_only_as_a_task_is_not_offered(hub: McpHub) -> None:
    names = [spec.name for spec in hub.tools("fake")]
    assert "fake.background" not in names and "fake.slow" in names


def test_the_servers_warnings_and_errors_reach_the_caller_and_its_info_does_not(hub: McpHub) -> None:
    heard: list[ServerLog] = []
    assert hub.call("fake.warn", {}, timeout=30, log=heard.append).content == "warned"
    assert heard == [ServerLog("fake", "warning", None, "disk almost full"),
                     ServerLog("fake", "error", "crm.sync", '{"code": 7, "what": "quota"}')]


def test_calls_to_one_server_run_at_once(hub: McpHub, tmp_path: Path) -> None:
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda pair: hub.call("fake.meet", {"me": pair[0], "other": pair[1]}, timeout=30),
                                [("a", "b"), ("b", "a")]))
    assert [a.content for a in answers] == ["met", "met"]


def test_a_relative_command_runs_from_the_project_root_with_its_env(hub: McpHub, tmp_path: Path) -> None:
    result = hub.call("fake.where", {}, timeout=30)
    assert result.outcome == "ok" and result.content == f"{tmp_path} hello"


def test_env_from_passes_only_the_named_variables_of_orchestrs_environment(tmp_path: Path) -> None:
    _install_fake_server(tmp_path)
    spec = McpServerSpec(command="bin/fake-mcp", env={"GREETING": "hi"}, env_from=("CRM_TOKEN", "CRM_REGION"))
    hub = McpHub({"fake": spec}, tmp_path, env={"CRM_TOKEN": "tok-123", "UNRELATED_SECRET": "nope"})
    try:
        seen = {name: hub.call("fake.variable", {"name": name}, timeout=30).content
                for name in ("CRM_TOKEN", "CRM_REGION", "UNRELATED_SECRET", "GREETING")}
    finally:
        hub.close()
    assert seen == {"CRM_TOKEN": "tok-123", "CRM_REGION": "-", "UNRELATED_SECRET": "-", "GREETING": "hi"}


# --- agent steps through the CLI --------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


def _project(project: ProjectDir, provider: str, *, context_tools: str, agent_tools: str,
             servers: str = "", verify: str = "") -> None:
    project.write("orchestr.yaml", f"""
        mcp_servers:
          time:
            command: "{TIME_SERVER}"
            args: ["--local-timezone", "UTC"]
            reach: {{}}
          {servers}
    """)
    project.write("contexts/ops.yaml", f"""
        title: Ops
        description: The operations desk.
        permissions:
          tools: {context_tools}
          write: ["out/**"]
    """)
    project.write("workflows/clock.yaml", f"""
        name: clock
        context: ops
        agents:
          clerk:
            model: "{MODELS[provider]}"
            instructions: You note the time.
            tools: {agent_tools}
            max_turns: 6
        steps:
          - id: note
            agent: clerk
            prompt: Write the current time in Berlin to out/now.txt.
            verify:
              - file_exists: out/now.txt
              {verify}
    """)


def _script(server: FakeLLMServer, provider: str) -> Script:
    return server.anthropic if provider == "anthropic" else server.openai


def _offered(provider: str, body: dict[str, object]) -> list[str]:
    tools = body.get("tools")
    assert isinstance(tools, list)
    if provider == "anthropic":
        return [str(t["name"]) for t in tools]
    return [str(t["function"]["name"]) for t in tools]


def _tool_results(provider: str, body: dict[str, object]) -> list[str]:
    """The tool results, as text, in the conversation the model was sent."""
    messages = body["messages"]
    assert isinstance(messages, list)
    if provider == "openai":
        return [str(m["content"]) for m in messages if m["role"] == "tool"]
    return [str(block["content"]) for m in messages if isinstance(m["content"], list)
            for block in m["content"] if block["type"] == "tool_result"]


def _events(project: ProjectDir, kind: str) -> list[dict[str, object]]:
    lines = (project.root / "ev.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def _write_now() -> ToolCall:
    return ToolCall("write_file", {"path": "out/now.txt", "content": "it is now"})


@needs_time_server
@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_an_agent_calls_an_mcp_tool_and_is_verified(project: ProjectDir, server: FakeLLMServer,
                                                    provider: str) -> None:
    _project(project, provider, context_tools='[write_file, "time.*"]',
             agent_tools="[time.get_current_time, write_file]",
             verify="- tool_called: { name: time.get_current_time }")
    script = _script(server, provider)
    script.enqueue(Reply.tool_calls(ToolCall("time__get_current_time", {"timezone": "Europe/Berlin"})),
                   Reply.tool_calls(_write_now()), Reply.text("Noted."))
    result = project.cli("run", "clock", "--events", "ev.jsonl", env=server.env())
    assert result.exit_code == 0, result.output
    # On the wire MCP tools carry API-safe names; the calls map back to `server.tool`.
    assert _offered(provider, script.requests[0].body) == ["time__get_current_time", "write_file"]
    [answer] = _tool_results(provider, script.requests[1].body)
    assert json.loads(answer)["timezone"] == "Europe/Berlin"
    assert abs(datetime.fromisoformat(json.loads(answer)["datetime"]) - datetime.now(UTC)) < timedelta(minutes=5)
    calls = [(e["tool"], e["outcome"], e["args"]) for e in _events(project, "tool.call")]
    assert calls[0] == ("time.get_current_time", "ok", {"timezone": "Europe/Berlin"})
    assert calls[1][:2] == ("write_file", "ok")
    checks = {e["check"]: e["passed"] for e in _events(project, "verify.result")}
    assert checks == {"file_exists": True, "tool_called": True}
    assert _children(TIME_SERVER) == []


@needs_time_server
def test_an_mcp_tool_outside_the_context_is_denied_and_the_model_told(project: ProjectDir,
                                                                      server: FakeLLMServer) -> None:
    _project(project, "anthropic", context_tools='[write_file, "time.convert_time"]',
             agent_tools="[time.convert_time, write_file]")
    server.anthropic.enqueue(Reply.tool_calls(ToolCall("time__get_current_time", {"timezone": "UTC"})),
                             Reply.tool_calls(_write_now()), Reply.text("Noted."))
    result = project.cli("run", "clock", "--events", "ev.jsonl", env=server.env())
    assert result.exit_code == 0, result.output
    assert _offered("anthropic", server.anthropic.requests[0].body) == ["time__convert_time", "write_file"]
    outcomes = [(e["tool"], e["outcome"]) for e in _events(project, "tool.call")]
    assert outcomes == [("time.get_current_time", "denied"), ("write_file", "ok")]
    [denial] = _tool_results("anthropic", server.anthropic.requests[1].body)
    assert denial.startswith("denied:") and "'time.get_current_time'" in denial and "context ops" in denial


@needs_time_server
def test_an_agent_given_an_mcp_tool_its_context_forbids_is_invalid(project: ProjectDir) -> None:
    _project(project, "anthropic", context_tools='[write_file, "time.convert_time"]',
             agent_tools="[time.get_current_time, write_file]")
    result = project.cli("validate")
    assert result.exit_code == 2
    assert "is given tool 'time.get_current_time' but its context does not allow it" in result.output


@needs_time_server
def test_a_server_that_cannot_start_fails_the_step_with_its_name(project: ProjectDir,
                                                                server: FakeLLMServer) -> None:
    _project(project, "anthropic", context_tools='[write_file, "ghost.*"]', agent_tools="[ghost.lookup, write_file]",
             servers="ghost: { command: no-such-mcp-server, reach: {} }")
    result = project.cli("run", "clock", "--events", "ev.jsonl", env=server.env())
    assert result.exit_code == 1, result.output
    [finished] = _events(project, "step.finished")
    assert finished["status"] == "failed"
    assert finished["reason"] == ("MCP server 'ghost' (no-such-mcp-server) failed to start: "
                                  "command not found: no-such-mcp-server")
    assert "Traceback" not in result.output and server.anthropic.requests == []


def _crm_project(project: ProjectDir) -> None:
    _install_fake_server(project.root)
    project.write("orchestr.yaml", """
        mcp_servers:
          crm: { command: bin/fake-mcp, env_from: [ORCHESTR_TEST_CRM_TOKEN], reach: {} }
    """)
    project.write("contexts/ops.yaml", """
        title: Ops
        permissions: { tools: ["crm.*"] }
    """)
    project.write("workflows/crm.yaml", f"""
        context: ops
        agents:
          clerk: {{ model: "{MODELS['anthropic']}", tools: [crm.variable], max_turns: 3 }}
        steps:
          - id: look
            agent: clerk
            prompt: Read the token.
            verify: [{{ tool_called: {{ name: crm.variable }} }}]
    """)


def test_an_env_from_variable_reaches_the_server_in_a_run_and_is_redacted(project: ProjectDir,
                                                                        server: FakeLLMServer) -> None:
    _crm_project(project)
    server.anthropic.enqueue(Reply.tool_calls(ToolCall("crm__variable", {"name": "ORCHESTR_TEST_CRM_TOKEN"})),
                             Reply.text("The token is crm-secret-4242."))
    token = "crm-secret-4242"
    result = project.cli("run", "crm", "--events", "ev.jsonl",
                         env={**server.env(), "ORCHESTR_TEST_CRM_TOKEN": token})
    assert result.exit_code == 0, result.output
    assert _tool_results("anthropic", server.anthropic.requests[1].body) == [token]
    [call] = _events(project, "tool.call")
    assert call["outcome"] == "ok" and call["args"] == {"name": "ORCHESTR_TEST_CRM_TOKEN"}
    # an env_from variable is a secret, like a provider's key: redacted wherever orchestr records it
    record = project.cli("runs", "show", "last", "--format", "json").stdout
    assert "The token is ***." in record and token not in record + result.output
    assert token not in (project.root / "ev.jsonl").read_text()


def test_a_missing_env_from_variable_stops_the_run_before_anything_runs(project: ProjectDir,
                                                                         server: FakeLLMServer) -> None:
    _crm_project(project)
    assert "ORCHESTR_TEST_CRM_TOKEN" not in os.environ
    result = project.cli("run", "crm", env=server.env())
    assert result.exit_code == 2, result.output
    assert ("ORCHESTR_TEST_CRM_TOKEN is not set: MCP server 'crm' (orchestr.yaml env_from) needs it"
            in result.stderr)
    assert server.anthropic.requests == [] and not (project.root / ".orchestr" / "runs").exists()


def _fake_project(project: ProjectDir, provider: str, tools: str) -> None:
    _install_fake_server(project.root)
    (project.root / "meet").mkdir()
    project.write("orchestr.yaml", 'mcp_servers:\n  fake: { command: bin/fake-mcp, reach: { write: ["meet/**"] } }\n')
    project.write("contexts/ops.yaml", 'title: Ops\npermissions: { tools: ["fake.*"], write: ["meet/**"] }\n')
    project.write("workflows/look.yaml", f"""
        context: ops
        agents:
          clerk: {{ model: "{MODELS[provider]}", tools: {tools}, max_turns: 3 }}
        steps:
          - id: look
            agent: clerk
            prompt: Look.
    """)


def test_an_image_from_a_tool_reaches_an_anthropic_model_as_an_image_block(project: ProjectDir,
                                                                          server: FakeLLMServer) -> None:
    _fake_project(project, "anthropic", "[fake.picture]")
    server.anthropic.enqueue(Reply.tool_calls(ToolCall("fake__picture", {})), Reply.text("A tiny picture."))
    result = project.cli("run", "look", env=server.env())
    assert result.exit_code == 0, result.output
    [block] = [b for m in server.anthropic.requests[1].body["messages"] if isinstance(m["content"], list)
               for b in m["content"] if b["type"] == "tool_result"]
    assert block["content"] == [
        {"type": "text", "text": "[image/png, 3 bytes]"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAEC"}}]


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_failed_tool_call_reaches_the_model_marked_as_an_error(project: ProjectDir, server: FakeLLMServer,
                                                                provider: str) -> None:
    _fake_project(project, provider, "[fake.fail]")
    script = _script(server, provider)
    script.enqueue(Reply.tool_calls(ToolCall("fake__fail", {})), Reply.text("It failed."))
    assert project.cli("run", "look", env=server.env()).exit_code == 0
    messages = script.requests[1].body["messages"]
    if provider == "anthropic":  # the API's own flag
        [block] = [b for m in messages if isinstance(m["content"], list) for b in m["content"]
                   if b["type"] == "tool_result"]
        assert block["is_error"] is True and "the CRM said no" in block["content"]
    else:  # Chat Completions has no flag on a tool message: its text says so
        [tool] = [m for m in messages if m["role"] == "tool"]
        assert tool["content"].startswith("error: ") and "the CRM said no" in tool["content"]


def test_the_models_tool_calls_in_one_turn_run_at_once(project: ProjectDir, server: FakeLLMServer) -> None:
    """Each call waits for the other to arrive: run one after the other, both would be alone."""
    _fake_project(project, "anthropic", "[fake.meet]")
    server.anthropic.enqueue(Reply.tool_calls(ToolCall("fake__meet", {"me": "meet/a", "other": "meet/b"}),
                                              ToolCall("fake__meet", {"me": "meet/b", "other": "meet/a"})),
                             Reply.text("We met."))
    result = project.cli("run", "look", "--events", "ev.jsonl", env=server.env())
    assert result.exit_code == 0, result.output
    assert _tool_results("anthropic", server.anthropic.requests[1].body) == ["met", "met"]
    [step] = json.loads(project.cli("runs", "show", "last", "--format", "json").stdout)["steps"]
    calls = step["attempt_records"][0]["tool_calls"]
    assert [c["args"]["me"] for c in calls] == ["meet/a", "meet/b"]  # recorded in the model's order


def test_a_servers_warnings_are_in_the_events_and_the_trace(project: ProjectDir, server: FakeLLMServer) -> None:
    _fake_project(project, "anthropic", "[fake.warn]")
    server.anthropic.enqueue(Reply.tool_calls(ToolCall("fake__warn", {})), Reply.text("Warned."))
    result = project.cli("run", "look", "--events", "ev.jsonl", env=server.env())
    assert result.exit_code == 0, result.output
    logs = [(e["step"], e["server"], e["level"], e["message"]) for e in _events(project, "tool.log")]
    assert logs == [("look", "fake", "warning", "disk almost full"),
                    ("look", "fake", "error", '{"code": 7, "what": "quota"}')]
    assert "MCP server fake warning: disk almost full" in result.output
    shown = json.loads(project.cli("runs", "show", "last", "--format", "json").stdout)
    assert [e["level"] for e in shown["events"] if e["event"] == "tool.log"] == ["warning", "error"]
    assert "just so you know" not in result.output + (project.root / "ev.jsonl").read_text()


def test_a_servers_warning_is_a_span_event_on_the_agent_span(project: ProjectDir, server: FakeLLMServer) -> None:
    from tests.otlp_receiver import OtlpReceiver

    _fake_project(project, "anthropic", "[fake.warn]")
    server.anthropic.enqueue(Reply.tool_calls(ToolCall("fake__warn", {})), Reply.text("Warned."))
    with OtlpReceiver() as receiver:
        result = project.cli("run", "look", env={**server.env(), "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint})
        assert result.exit_code == 0, result.output
    (agent,) = receiver.named("invoke_agent ")
    assert [(name, attrs["orchestr.mcp.level"], attrs["orchestr.mcp.message"]) for name, attrs in agent.events] == [
        ("mcp.log", "warning", "disk almost full"), ("mcp.log", "error", '{"code": 7, "what": "quota"}')]
