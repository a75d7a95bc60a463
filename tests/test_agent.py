"""Agent steps through the official SDKs against the local wire-protocol server, for both providers."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator

import pytest

from tests.conftest import ProjectDir
from tests.fakeapi import FakeLLMServer, Reply, Script, ToolCall

PROVIDERS = ["anthropic", "openai"]
MODELS = {"anthropic": "anthropic:claude-sonnet-4-6", "openai": "openai:gpt-4.1"}


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


def _write_project(project: ProjectDir, provider: str, *, verify: str = "", extra_step: str = "",
                   output: str = "", budget: str = "") -> None:
    project.write("contexts/acme.yaml", """
        title: Acme
        description: Acme sells anvils to coyotes.
        rules: ["Never promise delivery dates"]
        vars: { region: eu }
        permissions:
          tools: [read_file, write_file, list_files]
          write: ["out/**"]
    """)
    project.write("contexts/acme/support.yaml", """
        title: Support
        rules: ["Reply within one business day"]
        permissions:
          write: ["out/support/**"]
    """)
    project.write("data/tickets.json", '[{"id": 1, "text": "my anvil is late"}]\n')
    project.write("workflows/triage.yaml", f"""
        name: triage
        context: acme/support
        {budget}
        agents:
          triager:
            model: "{MODELS[provider]}"
            instructions: You triage support tickets.
            tools: [read_file, write_file]
            max_turns: 8
        steps:
          - id: triage
            agent: triager
            prompt: Triage data/tickets.json for ${{{{ vars.region }}}} into out/support/triage.json.
            {output}
            verify:
              {verify or "- file_exists: out/support/triage.json"}
              - tool_called: {{ name: write_file, args: {{ path: out/support/triage.json }} }}
    """)
    if extra_step:
        with (project.root / "workflows/triage.yaml").open("a") as handle:
            handle.write(textwrap.indent(textwrap.dedent(extra_step).strip("\n"), "  ") + "\n")


def _script(server: FakeLLMServer, provider: str) -> Script:
    return server.anthropic if provider == "anthropic" else server.openai


def _events(project: ProjectDir) -> list[dict[str, object]]:
    return [json.loads(line) for line in (project.root / "ev.jsonl").read_text().splitlines()]


def _write(path: str, content: str = '{"urgent": false}') -> ToolCall:
    return ToolCall("write_file", {"path": path, "content": content})


def _system_text(provider: str, body: dict[str, object]) -> str:
    if provider == "anthropic":
        system = body["system"]
        assert isinstance(system, list)
        return str(system[0]["text"])
    messages = body["messages"]
    assert isinstance(messages, list)
    return str(messages[0]["content"])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_tool_loop_writes_the_file_and_is_verified(project: ProjectDir, server: FakeLLMServer, provider: str) -> None:
    _write_project(project, provider)
    script = _script(server, provider)
    script.enqueue(Reply.tool_calls(ToolCall("read_file", {"path": "data/tickets.json"})),
                   Reply.tool_calls(_write("out/support/triage.json")),
                   Reply.text("Done: 1 ticket triaged."))
    result = project.cli("run", "triage", "--events", "ev.jsonl", env=server.env())
    assert result.exit_code == 0, result.output
    assert json.loads((project.root / "out/support/triage.json").read_text()) == {"urgent": False}
    second = script.requests[1].body
    assert "my anvil is late" in json.dumps(second["messages"])
    tools = [e for e in _events(project) if e["event"] == "tool.call"]
    assert [(t["tool"], t["outcome"]) for t in tools] == [("read_file", "ok"), ("write_file", "ok")]
    calls = [e for e in _events(project) if e["event"] == "model.call"]
    assert len(calls) == 3 and all(int(str(c["tokens_in"])) > 0 for c in calls)
    assert "tool write_file" in result.stdout


@pytest.mark.parametrize("provider", PROVIDERS)
def test_context_is_injected_and_prefixes_are_byte_identical(project: ProjectDir, server: FakeLLMServer,
                                                             provider: str) -> None:
    _write_project(project, provider, extra_step="""
          - id: again
            agent: triager
            prompt: A different task entirely.
            verify: [ { file_exists: data/tickets.json } ]
    """)
    script = _script(server, provider)
    script.responder = lambda request: Reply.tool_calls(_write("out/support/triage.json")) \
        if "triage.json" in json.dumps(request.body["messages"][-1]) and len(request.body["messages"]) < 4 else Reply.text("ok")
    result = project.cli("run", "triage", "--max-parallel", "1", env=server.env())
    assert result.exit_code == 0, result.output
    expected = project.cli("context", "show", "acme/support", "--text").stdout
    texts = [_system_text(provider, r.body) for r in script.requests]
    assert texts and all(t == expected for t in texts)
    assert "Never promise delivery dates" in expected and "Reply within one business day" in expected
    if provider == "anthropic":
        first = script.requests[0].body
        assert first["system"][0]["cache_control"] == {"type": "ephemeral"}
        prefixes = {json.dumps([r.body["tools"], r.body["system"][0]]) for r in script.requests}
        assert len(prefixes) == 1
        assert any(r.body for r in script.requests)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_permission_denial_is_returned_to_the_model(project: ProjectDir, server: FakeLLMServer, provider: str) -> None:
    _write_project(project, provider)
    script = _script(server, provider)
    script.enqueue(Reply.tool_calls(_write("out/sales/leak.json")),
                   Reply.tool_calls(_write("out/support/triage.json")),
                   Reply.text("done"))
    result = project.cli("run", "triage", "--events", "ev.jsonl", env=server.env())
    assert result.exit_code == 0, result.output
    assert not (project.root / "out/sales").exists()
    tools = [e for e in _events(project) if e["event"] == "tool.call"]
    assert tools[0]["outcome"] == "denied"
    fed_back = json.dumps(script.requests[1].body["messages"])
    assert "denied" in fed_back and "context acme/support" in fed_back


@pytest.mark.parametrize("provider", PROVIDERS)
def test_path_escapes_are_denied(project: ProjectDir, server: FakeLLMServer, provider: str,
                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    _write_project(project, provider)
    outside = tmp_path_factory.mktemp("outside")
    (project.root / "out" / "support").mkdir(parents=True)
    (project.root / "out" / "support" / "link").symlink_to(outside, target_is_directory=True)
    script = _script(server, provider)
    script.enqueue(Reply.tool_calls(_write("../escape.json"), _write(str(outside / "abs.json")),
                                    _write("out/support/link/sym.json"), ToolCall("read_file", {"path": "/etc/passwd"})),
                   Reply.tool_calls(_write("out/support/triage.json")),
                   Reply.text("done"))
    result = project.cli("run", "triage", "--events", "ev.jsonl", env=server.env())
    assert result.exit_code == 0, result.output
    outcomes = [e["outcome"] for e in _events(project) if e["event"] == "tool.call"]
    assert outcomes == ["denied", "denied", "denied", "denied", "ok"]
    assert list(outside.iterdir()) == [] and not (project.root.parent / "escape.json").exists()
    assert "root:" not in json.dumps(script.requests[1].body)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_structured_output_is_enforced_with_a_retry(project: ProjectDir, server: FakeLLMServer, provider: str) -> None:
    output = "output: { schema: { type: object, required: [urgent], properties: { urgent: { type: boolean } } } }"
    _write_project(project, provider, output=output, extra_step="""
        - id: page
          needs: [triage]
          if: ${{ steps.triage.output.urgent }}
          run: touch paged.txt
    """)
    script = _script(server, provider)
    script.enqueue(Reply.tool_calls(_write("out/support/triage.json")),
                   Reply.json({"urgent": "very"}),
                   Reply.json({"urgent": True}))
    result = project.cli("run", "triage", env=server.env())
    assert result.exit_code == 0, result.output
    assert (project.root / "paged.txt").exists()
    retry_message = json.dumps(script.requests[2].body["messages"][-1])
    assert "does not match the required JSON schema" in retry_message and "'very' is not of type 'boolean'" in retry_message
    if provider == "openai":
        assert script.requests[0].body["response_format"]["type"] == "json_schema"
    else:
        assert any(t["name"] == "final_output" for t in script.requests[0].body["tools"])


@pytest.mark.parametrize("provider", PROVIDERS)
def test_failed_verification_is_fed_back_then_succeeds(project: ProjectDir, server: FakeLLMServer, provider: str) -> None:
    _write_project(project, provider)
    script = _script(server, provider)
    script.enqueue(Reply.text("I have written out/support/triage.json."),
                   Reply.tool_calls(_write("out/support/triage.json")),
                   Reply.text("Now it is really written."))
    result = project.cli("run", "triage", "--events", "ev.jsonl", env=server.env())
    assert result.exit_code == 0, result.output
    feedback = json.dumps(script.requests[1].body["messages"][-1])
    assert "verification failed" in feedback and "does not exist" in feedback
    verdicts = [e["passed"] for e in _events(project) if e["event"] == "verify.result"]
    assert verdicts == [False, False, True, True]


@pytest.mark.parametrize("provider", PROVIDERS)
def test_a_model_that_only_says_it_is_done_is_unverified(project: ProjectDir, server: FakeLLMServer, provider: str) -> None:
    _write_project(project, provider)
    _script(server, provider).responder = lambda request: Reply.text("All done, the file is written!")
    result = project.cli("run", "triage", env=server.env())
    assert result.exit_code == 3
    assert "unverified" in result.stdout and "does not exist" in result.stdout
    assert len(_script(server, provider).requests) == 3  # the answer plus two rounds of feedback


@pytest.mark.parametrize("provider", PROVIDERS)
def test_rate_limit_then_success(project: ProjectDir, server: FakeLLMServer, provider: str) -> None:
    _write_project(project, provider)
    script = _script(server, provider)
    script.enqueue(Reply.rate_limited(0.05), Reply.tool_calls(_write("out/support/triage.json")), Reply.text("done"))
    result = project.cli("run", "triage", "--events", "ev.jsonl", env=server.env())
    assert result.exit_code == 0, result.output
    calls = [e for e in _events(project) if e["event"] == "model.call"]
    assert "HTTP 429" in str(calls[0]["error"]) and calls[0]["retry_in"] == 0.05
    assert len(script.requests) == 3


@pytest.mark.parametrize("provider", PROVIDERS)
def test_overload_storm_exhausts_retries_with_a_clear_message(project: ProjectDir, server: FakeLLMServer,
                                                              provider: str) -> None:
    _write_project(project, provider)
    script = _script(server, provider)
    script.responder = lambda request: Reply.overloaded(retry_after_ms=5)
    result = project.cli("run", "triage", env=server.env())
    assert result.exit_code == 1
    assert "HTTP 529" in result.stdout and "gave up after 6 attempts" in result.stdout
    assert len(script.requests) == 6  # one retry layer: ours, not the SDK's stacked on top


@pytest.mark.parametrize("provider", PROVIDERS)
def test_bad_request_fails_at_once(project: ProjectDir, server: FakeLLMServer, provider: str) -> None:
    _write_project(project, provider)
    script = _script(server, provider)
    script.enqueue(Reply.error(400, "max_tokens is too large"))
    result = project.cli("run", "triage", env=server.env())
    assert result.exit_code == 1
    assert "HTTP 400: max_tokens is too large" in result.stdout
    assert len(script.requests) == 1


@pytest.mark.parametrize("provider", PROVIDERS)
def test_step_budget_is_enforced(project: ProjectDir, server: FakeLLMServer, provider: str) -> None:
    _write_project(project, provider, budget="budget: { max_tokens: 50 }")
    _script(server, provider).responder = lambda request: Reply.tool_calls(ToolCall("list_files", {"path": "."}))
    result = project.cli("run", "triage", env=server.env())
    assert result.exit_code == 1
    assert "budget exceeded: run used" in result.stdout


def test_missing_key_is_an_error_before_anything_runs(project: ProjectDir) -> None:
    _write_project(project, "anthropic")
    result = project.cli("run", "triage", env={"ANTHROPIC_API_KEY": ""})
    assert result.exit_code == 2
    assert "ANTHROPIC_API_KEY is not set" in result.stderr
    assert not (project.root / ".orchestr").exists()


@pytest.mark.parametrize("provider", PROVIDERS)
def test_record_then_replay_without_server_or_key(project: ProjectDir, provider: str) -> None:
    _write_project(project, provider)
    with FakeLLMServer() as srv:
        _script(srv, provider).enqueue(Reply.tool_calls(_write("out/support/triage.json")), Reply.text("done"))
        recorded = project.cli("run", "triage", "--record", "rec.jsonl", env=srv.env())
    assert recorded.exit_code == 0, recorded.output
    (project.root / "out/support/triage.json").unlink()
    offline = {"ANTHROPIC_API_KEY": "", "OPENAI_API_KEY": "", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
               "OPENAI_BASE_URL": "http://127.0.0.1:9"}
    replayed = project.cli("run", "triage", "--replay", "rec.jsonl", env=offline)
    assert replayed.exit_code == 0, replayed.output
    assert (project.root / "out/support/triage.json").exists()
    workflow = project.root / "workflows/triage.yaml"
    workflow.write_text(workflow.read_text().replace("Triage data", "Triage all data"))
    mismatch = project.cli("run", "triage", "--replay", "rec.jsonl", env=offline)
    assert mismatch.exit_code == 1 and "no recorded exchange matches" in mismatch.stdout


def test_allow_and_attach_are_applied_and_recorded(project: ProjectDir, server: FakeLLMServer) -> None:
    _write_project(project, "openai")
    project.write("notes.md", "Escalate anything about anvils.\n")
    server.openai.enqueue(Reply.tool_calls(ToolCall("list_files", {"path": "."})),
                          Reply.tool_calls(_write("out/support/triage.json")), Reply.text("done"))
    result = project.cli("run", "triage", "--attach", "notes.md", "--allow", "tools:list_files",
                         "--events", "ev.jsonl", env=server.env())
    assert result.exit_code == 0, result.output
    first = json.dumps(server.openai.requests[0].body["messages"])
    assert "Escalate anything about anvils." in first
    offered = [t["function"]["name"] for t in server.openai.requests[0].body["tools"]]
    assert offered == ["read_file", "write_file", "list_files"]
    run = json.loads(project.cli("runs", "show", "last", "--format", "json").stdout)
    assert run["options"]["allow"] == ["tools:list_files"] and run["options"]["attach"] == ["notes.md"]
    beyond = project.cli("run", "triage", "--allow", "tools:run_command", env=server.env())
    assert beyond.exit_code == 2 and "beyond the ceiling of context acme" in beyond.stderr




def test_an_agent_without_context_sends_no_empty_cached_block(project: ProjectDir, server: FakeLLMServer) -> None:
    project.write("workflows/plain.yaml", """
        agents:
          writer: { model: "anthropic:claude-sonnet-4-6", instructions: Be brief. }
        steps:
          - { id: say, agent: writer, prompt: Say hi. }
    """)
    server.anthropic.enqueue(Reply.text("hi"))
    result = project.cli("run", "plain", env=server.env())
    assert result.exit_code == 0, result.output
    body = server.anthropic.requests[0].body
    assert body["system"] == [{"type": "text", "text": "Be brief."}]
    assert "cache_control" not in json.dumps(body)
