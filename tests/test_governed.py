"""Governed tools: nothing an agent calls escapes the permissions.

Real servers, started here: tests/mcp_servers/fs_server.py (a filesystem-like MCP server that does
whatever it is asked) over stdio inside the real bubblewrap sandbox, and over Streamable HTTP on
127.0.0.1; agent steps reach them through the fake provider API (tests/fakeapi.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestr.governance import Governance
from orchestr.models import McpServerSpec, Reach
from orchestr.tools.mcp import McpError, McpHub
from orchestr.tools.sandbox import find_sandbox
from tests.conftest import REPO, ProjectDir
from tests.fakeapi import FakeLLMServer, Reply, ToolCall

FS_SERVER = str(REPO / "tests" / "mcp_servers" / "fs_server.py")
MODEL = "anthropic:claude-sonnet-4-6"
needs_sandbox = pytest.mark.skipif(isinstance(find_sandbox(os.environ), str),
                                   reason=f"no sandbox here: {find_sandbox(os.environ)}")


def _governed_project(root: Path) -> None:
    for relative, text in {"orchestr.yaml": "state_dir: .orchestr\n", "contexts/ops.yaml": "title: Ops\n",
                           "workflows/w.yaml": "steps: []\n", "orchestr.lock": "{}\n"}.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)


def _fs(**reach: list[str]) -> McpServerSpec:
    return McpServerSpec(command=sys.executable, args=(FS_SERVER,), reach=Reach(**reach))


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[McpHub]:
    _governed_project(tmp_path)
    servers = {"fs": _fs(write=["out/**"]), "net": _fs(hosts=["127.0.0.1"]),
               "wide": McpServerSpec(command=sys.executable, args=(FS_SERVER,))}
    hub = McpHub(servers, tmp_path)
    yield hub
    hub.close()


def _call(hub: McpHub, tool: str, **args: object) -> str:
    result = hub.call(tool, args, timeout=30)
    assert result.outcome == "ok", result.content
    return result.content


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


# --- the sandbox, against the real server -----------------------------------------------------


@needs_sandbox
def test_a_sandboxed_server_writes_inside_its_reach_only(hub: McpHub, tmp_path: Path) -> None:
    assert _call(hub, "fs.write_file", path="out/report.txt", content="fine").startswith("ok")
    assert (tmp_path / "out" / "report.txt").read_text() == "fine"
    outside = REPO / "escape-from-sandbox.txt"
    for path in ["notes.txt", "../escape.txt", str(outside), str(tmp_path / "notes.txt"), "out/../notes.txt"]:
        answer = _call(hub, "fs.write_file", path=path, content="escaped")
        # `..` from the project lands in the sandbox's private /tmp at most: never on the host
        assert answer.startswith("failed") or path == "../escape.txt", (path, answer)
    assert not (tmp_path / "notes.txt").exists() and not (tmp_path.parent / "escape.txt").exists()
    assert not outside.exists()


@needs_sandbox
def test_no_server_writes_governance_paths_even_through_symlinks_made_mid_run(hub: McpHub,
                                                                              tmp_path: Path) -> None:
    assert _call(hub, "fs.write_file", path="out/first.txt", content="started")
    for path in ["contexts/ops.yaml", "orchestr.yaml", "orchestr.lock", "workflows/w.yaml", "contexts/new.yaml",
                 ".orchestr/state.db", str(tmp_path / "contexts" / "ops.yaml")]:
        assert _call(hub, "fs.write_file", path=path, content="permissions: {write: ['**']}").startswith("failed")
    # links made while the server runs, by the test and by the server itself, lead nowhere writable
    (tmp_path / "out" / "by-test").symlink_to(tmp_path / "contexts")
    assert _call(hub, "fs.symlink", target="../contexts", link="out/by-server").startswith("ok")
    assert _call(hub, "fs.symlink", target=str(tmp_path), link="out/root").startswith("ok")
    for path in ["out/by-test/ops.yaml", "out/by-server/ops.yaml", "out/root/orchestr.yaml", "out/root/x.txt"]:
        assert _call(hub, "fs.write_file", path=path, content="widened").startswith("failed"), path
    assert (tmp_path / "contexts" / "ops.yaml").read_text() == "title: Ops\n"
    assert (tmp_path / "orchestr.yaml").read_text() == "state_dir: .orchestr\n"
    assert sorted(p.name for p in (tmp_path / "contexts").iterdir()) == ["ops.yaml"]


@needs_sandbox
def test_a_sandboxed_server_has_no_network_unless_its_reach_lists_hosts(hub: McpHub, listener: int) -> None:
    assert _call(hub, "fs.connect", host="127.0.0.1", port=listener).startswith("failed")
    assert _call(hub, "net.connect", host="127.0.0.1", port=listener) == "ok connected"
    # and one that reaches everything runs as it always did, unconfined
    assert _call(hub, "wide.connect", host="127.0.0.1", port=listener) == "ok connected"


@needs_sandbox
def test_a_write_reach_that_is_a_symlink_into_contexts_is_refused(tmp_path: Path) -> None:
    _governed_project(tmp_path)
    (tmp_path / "out").symlink_to(tmp_path / "contexts")
    hub = McpHub({"fs": _fs(write=["out/**"])}, tmp_path)
    try:
        with pytest.raises(McpError) as caught:
            hub.tools("fs")
    finally:
        hub.close()
    assert "MCP server 'fs'" in str(caught.value) and "inside contexts, which no server may write" in str(caught.value)


def test_without_a_sandbox_a_server_with_a_reach_is_refused(tmp_path: Path) -> None:
    _governed_project(tmp_path)
    env = {**os.environ, "ORCHESTR_BWRAP": str(tmp_path / "no-bwrap-here")}
    hub = McpHub({"fs": _fs(write=["out/**"])}, tmp_path, env=env)
    try:
        with pytest.raises(McpError) as caught:
            hub.tools("fs")
    finally:
        hub.close()
    message = str(caught.value)
    assert message.startswith(f"MCP server 'fs' ({sys.executable} {FS_SERVER}) was not started: its reach "
                              "(write: out/**) is narrower than everything, so it runs only in a sandbox")
    assert "no bubblewrap" in message and "mcp_servers.fs.unsafe_no_sandbox: true in orchestr.yaml" in message


def test_the_unsafe_opt_out_starts_the_server_unconfined(tmp_path: Path) -> None:
    _governed_project(tmp_path)
    env = {**os.environ, "ORCHESTR_BWRAP": str(tmp_path / "no-bwrap-here")}
    spec = _fs(write=["out/**"]).model_copy(update={"unsafe_no_sandbox": True})
    hub = McpHub({"fs": spec}, tmp_path, env=env)
    try:
        assert _call(hub, "fs.write_file", path="notes.txt", content="unconfined") == "ok 10 characters"
    finally:
        hub.close()
    assert (tmp_path / "notes.txt").read_text() == "unconfined"


# --- built-in tools and the governance paths --------------------------------------------------


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


def _events(project: ProjectDir, kind: str) -> list[dict[str, object]]:
    lines = (project.root / "ev.jsonl").read_text().splitlines()
    return [e for e in map(json.loads, lines) if e["event"] == kind]


def _tool_results(server: FakeLLMServer) -> list[str]:
    """The tool results in the last conversation the model was sent."""
    return [str(b["content"]) for m in server.anthropic.requests[-1].body["messages"]
            if isinstance(m["content"], list) for b in m["content"] if b["type"] == "tool_result"]


def _agent_project(project: ProjectDir, *, servers: str = "", context: str = "", tools: str = "[write_file]",
                   permissions: str = "") -> None:
    project.write("orchestr.yaml", f"state_dir: state\nmcp_servers:\n{servers or '  {}'}\n")
    project.write("contexts/ops.yaml", f"title: Ops\npermissions:\n  tools: [write_file, run_command, 'fs.*', 'crm.*']\n{context}")
    project.write("workflows/w.yaml", f"""
        context: ops
        agents:
          clerk: {{ model: "{MODEL}", tools: {tools}, max_turns: 12 {permissions} }}
        steps:
          - id: work
            agent: clerk
            prompt: Do the work.
    """)


def test_write_file_never_writes_governance_paths_whatever_permissions_say(project: ProjectDir,
                                                                           server: FakeLLMServer) -> None:
    _agent_project(project)  # write unset: anywhere in the project, which is the widest a context can be
    before = {p: (project.root / p).read_text() for p in ("orchestr.yaml", "contexts/ops.yaml", "workflows/w.yaml")}
    targets = ["contexts/ops.yaml", "orchestr.yaml", "workflows/w.yaml", "contexts/new.yaml", "orchestr.lock",
               "state/runs.db", "./contexts/ops.yaml", "out/../contexts/ops.yaml", "out/ok.txt"]
    server.anthropic.enqueue(*(Reply.tool_calls(ToolCall("write_file", {"path": p, "content": "x"})) for p in targets),
                             Reply.text("done"))
    result = project.cli("run", "w", "--events", "ev.jsonl", env=server.env())
    assert result.exit_code == 0, result.output
    calls = _events(project, "tool.call")
    assert [c["outcome"] for c in calls] == ["denied"] * 8 + ["ok"]
    first = _tool_results(server)[0]
    assert first == ("denied: 'contexts/ops.yaml' is in contexts, which governs agents: no tool may write it, "
                     "whatever the permissions say")
    assert {p: (project.root / p).read_text() for p in before} == before
    assert not (project.root / "orchestr.lock").exists() and not (project.root / "contexts" / "new.yaml").exists()


# --- validation -------------------------------------------------------------------------------


def test_a_write_glob_covering_governance_is_an_error_where_it_is_written(project: ProjectDir) -> None:
    project.write("orchestr.yaml", """
        mcp_servers:
          fs: { command: fs-server, reach: { write: ["*.md"] } }
    """)
    project.write("contexts/ops.yaml", """
        title: Ops
        permissions:
          tools: [write_file]
          write: ["out/**", "**"]
    """)
    result = project.cli("validate")
    assert result.exit_code == 2
    assert ("contexts/ops.yaml:4:21: error: permissions.write lists '**', which covers a governance path\n"
            "  hint: write: '**' covers contexts/, which no agent may write (governance paths: contexts, workflows, "
            "orchestr.yaml, orchestr.lock, .orchestr); narrow it to the folders agents produce, e.g. out/**"
            in result.output)
    assert ("orchestr.yaml:2:46: error: mcp_servers.fs.reach.write lists '*.md' (the sandbox makes its folder "
            "writable: **), which covers a governance path" in result.output)


def test_a_step_or_agent_write_glob_covering_governance_is_an_error(project: ProjectDir) -> None:
    _agent_project(project, permissions=', permissions: { write: ["workflows/**"] }')
    project.write("workflows/w.yaml", (project.root / "workflows/w.yaml").read_text()
                  + "    permissions: { write: [\"stat*/**\"] }\n")
    result = project.cli("validate")
    assert result.exit_code == 2, result.output
    assert "workflows/w.yaml:3:110: error: permissions.write lists 'workflows/**', which covers a governance" in result.output
    assert "workflows/w.yaml:8:28: error: permissions.write lists 'stat*/**', which covers a governance" in result.output
    assert "covers state/, which no agent may write" in result.output


def test_a_server_whose_reach_the_step_does_not_cover_is_an_error_naming_what_is_missing(project: ProjectDir) -> None:
    _agent_project(project, servers='  fs: { command: fs-server, reach: { write: ["data/**"], hosts: [api.example] } }\n'
                   '  big: { command: big-server }', context='  write: ["out/**"]\n',
                   tools="[write_file, fs.write_file, big.query]")
    project.write("contexts/ops.yaml", (project.root / "contexts/ops.yaml").read_text().replace("'crm.*'", "'big.*'"))
    result = project.cli("validate")
    assert result.exit_code == 2, result.output
    assert ("workflows/w.yaml:6:12: error: step 'work' may use MCP server 'fs' (agent 'clerk' has its tools), but MCP "
            "server 'fs' reaches write: data/**; hosts: api.example, beyond this step's permissions: write 'data/**' "
            "not allowed by context ops (allows: out/**); host 'api.example' not allowed: no level allows any hosts"
            in result.output)
    assert "MCP server 'big' reaches everything (no reach declared), beyond this step's permissions" in result.output


def test_a_server_reaching_everything_is_usable_by_a_step_allowed_everything(project: ProjectDir) -> None:
    _agent_project(project, servers="  big: { command: big-server }", tools="[big.query]",
                   context="  hosts: ['*']\n  commands: ['*']\n")
    project.write("contexts/ops.yaml", (project.root / "contexts/ops.yaml").read_text().replace("'crm.*'", "'big.*'"))
    result = project.cli("validate")
    assert result.exit_code == 0, result.output
    plan = json.loads(project.cli("plan", "w", "--format", "json").stdout)
    assert plan["steps"][0]["mcp_servers"] == {"big": "everything (no reach declared)"}


@pytest.mark.parametrize(("server", "message"), [
    ('{ command: fs-server, url: "http://127.0.0.1:9/mcp" }', "this one has both `command:` and `url:`"),
    ("{ env_from: [TOKEN] }", "this one has neither `command:` nor `url:`"),
])
def test_a_server_needs_exactly_one_of_command_and_url(project: ProjectDir, server: str, message: str) -> None:
    project.write("orchestr.yaml", f"mcp_servers:\n  fs: {server}\n")
    result = project.cli("validate")
    assert result.exit_code == 2
    assert "orchestr.yaml:2:7: error:" in result.output and message in result.output, result.output


# --- through a run: the run-time gate, the sandbox, remote servers, recordings ----------------


def test_an_allow_grant_covering_governance_is_refused(project: ProjectDir, server: FakeLLMServer) -> None:
    _agent_project(project)
    result = project.cli("run", "w", "--allow", "write:contexts/**", env=server.env())
    assert result.exit_code == 2, result.output
    assert "--allow write:contexts/**: write: 'contexts/**' covers contexts/, which no agent may write" in result.stderr
    assert server.anthropic.requests == []


def test_a_server_granted_by_allow_beyond_its_reach_is_denied_at_run_time(project: ProjectDir,
                                                                          server: FakeLLMServer) -> None:
    _agent_project(project, servers=f'  fs: {{ command: "{sys.executable}", args: ["{FS_SERVER}"], '
                   'reach: { write: ["data/**"] } }', context='  write: ["out/**"]\n')
    server.anthropic.enqueue(Reply.tool_calls(ToolCall("fs__write_file", {"path": "data/x", "content": "x"})),
                             Reply.text("done"))
    result = project.cli("run", "w", "--allow", "tools:fs.*", "--events", "ev.jsonl", env=server.env())
    assert result.exit_code == 0, result.output
    [call] = _events(project, "tool.call")
    assert call["tool"] == "fs.write_file" and call["outcome"] == "denied"
    assert _tool_results(server) == ["denied: MCP server 'fs' reaches write: data/**, beyond this step's "
                                     "permissions: write 'data/**' not allowed by context ops (allows: out/**)"]
    offered = [t["name"] for t in server.anthropic.requests[0].body["tools"]]
    assert offered == ["write_file"]  # a server beyond reach is not offered either
    assert not (project.root / "data").exists()


@needs_sandbox
def test_an_agent_cannot_rewrite_its_context_through_an_mcp_server(project: ProjectDir,
                                                                   server: FakeLLMServer) -> None:
    _agent_project(project, servers=f'  fs: {{ command: "{sys.executable}", args: ["{FS_SERVER}"], '
                   'reach: { write: ["out/**"] } }', context='  write: ["out/**"]\n',
                   tools="[write_file, fs.write_file, fs.symlink]")
    before = (project.root / "contexts/ops.yaml").read_text()
    widened = "title: Ops\npermissions: { tools: ['**'], write: ['**'] }\n"
    calls = [ToolCall("fs__write_file", {"path": "contexts/ops.yaml", "content": widened}),
             ToolCall("fs__symlink", {"target": "../contexts", "link": "out/c"}),
             ToolCall("fs__write_file", {"path": "out/c/ops.yaml", "content": widened}),
             ToolCall("fs__write_file", {"path": str(project.root / "orchestr.yaml"), "content": ""}),
             ToolCall("write_file", {"path": "out/c/ops.yaml", "content": widened}),
             ToolCall("fs__write_file", {"path": "out/fine.txt", "content": "ok"})]
    server.anthropic.enqueue(*(Reply.tool_calls(c) for c in calls), Reply.text("done"))
    result = project.cli("run", "w", "--events", "ev.jsonl", env=server.env())
    assert result.exit_code == 0, result.output
    answers = [c["outcome"] for c in _events(project, "tool.call")]
    assert answers == ["ok"] * 4 + ["denied", "ok"]  # the server's own failures are results it reports
    results = _tool_results(server)
    assert results[0] == results[2] == results[3] == "failed: Read-only file system"
    assert (project.root / "contexts/ops.yaml").read_text() == before
    assert (project.root / "out/fine.txt").read_text() == "ok"


@pytest.fixture
def http_server() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, FS_SERVER, "--http"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_remote_server_gets_its_header_from_env_from(project: ProjectDir, server: FakeLLMServer,
                                                       http_server: str) -> None:
    _agent_project(project, servers=f'  crm: {{ url: "{http_server}", env_from: [ORCHESTR_TEST_CRM_TOKEN], '
                   'headers: { Authorization: "Bearer ${ORCHESTR_TEST_CRM_TOKEN}" }, reach: {} }',
                   context="  hosts: [127.0.0.1]\n", tools="[crm.header]")
    token = "crm-token-7781"
    server.anthropic.enqueue(Reply.tool_calls(ToolCall("crm__header", {"name": "Authorization"})),
                             Reply.text(f"The server saw Bearer {token}."))
    record = project.root / "rec.jsonl"
    result = project.cli("run", "w", "--events", "ev.jsonl", "--record", str(record),
                         env={**server.env(), "ORCHESTR_TEST_CRM_TOKEN": token})
    assert result.exit_code == 0, result.output
    [answer] = _tool_results(server)
    assert answer == f"Bearer {token}"  # what the remote server received
    assert token not in (project.root / "ev.jsonl").read_text()
    assert token not in record.read_text() and "The server saw Bearer ***." in record.read_text()


def test_a_remote_servers_host_is_part_of_its_reach(project: ProjectDir) -> None:
    _agent_project(project, servers='  crm: { url: "http://crm.internal.example:8080/mcp", reach: {} }',
                   tools="[crm.lookup]")
    result = project.cli("validate")
    assert result.exit_code == 2
    assert "MCP server 'crm' reaches hosts: crm.internal.example" in result.output
    assert "host 'crm.internal.example' not allowed: no level allows any hosts" in result.output


def test_a_recording_holds_no_secret_value(project: ProjectDir, server: FakeLLMServer) -> None:
    _agent_project(project, servers=f'  crm: {{ command: "{sys.executable}", args: ["{FS_SERVER}"], '
                   'env_from: [ORCHESTR_TEST_CRM_TOKEN], reach: {} }', tools="[write_file]")
    project.write("orchestr.yaml", (project.root / "orchestr.yaml").read_text() + "secrets: [ACME_WEBHOOK]\n")
    secrets = {"ORCHESTR_TEST_CRM_TOKEN": "crm-secret-5150", "ACME_WEBHOOK": "https://hooks.example/T0K3N"}
    api_key = server.env()["ANTHROPIC_API_KEY"]
    echoed = f"{secrets['ORCHESTR_TEST_CRM_TOKEN']} {secrets['ACME_WEBHOOK']} {api_key}"
    server.anthropic.enqueue(Reply.tool_calls(ToolCall("write_file", {"path": "out/" + "x" * 190 + ".txt",
                                                                      "content": echoed})),
                             Reply.text(f"Wrote {echoed}."))
    record = project.root / "rec.jsonl"
    result = project.cli("run", "w", "--record", str(record), env={**server.env(), **secrets})
    assert result.exit_code == 0, result.output
    text = record.read_text()
    assert len(text.splitlines()) == 2 and "Wrote *** *** ***." in text
    for value in [*secrets.values(), api_key, "crm-secret", "T0K3N"]:
        assert value not in text


def test_governance_paths_follow_the_state_dir() -> None:
    governance = Governance.for_state_dir("./var/orchestr/")
    assert governance.paths == ("contexts", "workflows", "orchestr.yaml", "orchestr.lock", "var/orchestr")
    assert [governance.covered_by(p) for p in ["out/**", "var/**", "*.yaml", "v?r/*/x", "**/*.json", "docs/*"]] == [
        None, "var/orchestr", "orchestr.yaml", "var/orchestr", "contexts", None]
    assert Governance.for_state_dir("/srv/state").paths[-1] == "orchestr.lock"


# --- `sandbox: true`: run_command's children inside the sandbox --------------------------------


def _sandboxed_workflow(project: ProjectDir, *, context: str) -> None:
    _agent_project(project, context=f'  commands: [sh, "{sys.executable}"]\n{context}', tools="[run_command]")
    text = (project.root / "workflows/w.yaml").read_text()
    project.write("workflows/w.yaml", "sandbox: true\n" + text)
    (project.root / "data").mkdir()


def _sh(script: str) -> ToolCall:
    return ToolCall("run_command", {"argv": ["sh", "-c", script]})


@needs_sandbox
@pytest.mark.parametrize("write", ['  write: ["out/**"]\n', ""])
def test_run_command_in_the_sandbox_writes_only_where_the_step_may(project: ProjectDir, server: FakeLLMServer,
                                                                   write: str, listener: int) -> None:
    _sandboxed_workflow(project, context=write)
    before = (project.root / "contexts/ops.yaml").read_text()
    (project.root / "out").mkdir()
    calls = [_sh("echo ok > out/a.txt"), _sh("echo widened > contexts/ops.yaml"), _sh("echo x > orchestr.lock"),
             _sh("ln -s ../contexts out/c && echo widened > out/c/ops.yaml"), _sh("echo x > data/d.txt"),
             ToolCall("run_command", {"argv": [sys.executable, "-c", "import socket; socket.create_connection("
                                                                      f"('127.0.0.1', {listener}), timeout=5)"]})]
    server.anthropic.enqueue(*(Reply.tool_calls(c) for c in calls), Reply.text("done"))
    result = project.cli("run", "w", "--events", "ev.jsonl", env=server.env())
    assert result.exit_code == 0, result.output
    results = _tool_results(server)
    assert results[0].startswith("exit code: 0")
    for answer in results[1:4]:
        assert not answer.startswith("exit code: 0") and "Read-only file system" in answer, answer
    # with `write` unset every folder of the project is writable but the governance paths
    assert results[4].startswith("exit code: 0" if not write else "exit code: 2"), results[4]
    assert not results[5].startswith("exit code: 0") and "ConnectionRefusedError" in results[5], results[5]
    assert (project.root / "out/a.txt").read_text() == "ok\n"
    assert (project.root / "contexts/ops.yaml").read_text() == before
    assert not (project.root / "orchestr.lock").exists()
    assert (project.root / "data/d.txt").exists() == (not write)


def test_sandbox_true_without_a_sandbox_stops_the_run_before_it_starts(project: ProjectDir,
                                                                       server: FakeLLMServer) -> None:
    _sandboxed_workflow(project, context="")
    result = project.cli("run", "w", env={**server.env(), "ORCHESTR_BWRAP": str(project.root / "no-bwrap")})
    assert result.exit_code == 2, result.output
    assert "workflows/w.yaml: `sandbox: true` runs run_command's children in a sandbox, but no bubblewrap" in result.stderr
    assert server.anthropic.requests == []
