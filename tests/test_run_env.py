"""`--resume last` keeps the old inputs; `.env` at the project root is read, never overrides, and is redacted."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import ProjectDir
from tests.fakeapi import FakeLLMServer, Reply, ToolCall

FLAKY = """
    name: greet
    inputs:
      who: { type: string, required: true }
    steps:
      - id: greet
        run: |
          test -f ok || { touch ok; echo "first try fails"; exit 1; }
          printf '%s\\n' "$WHO" > greeted.txt
        env: { WHO: "${{ inputs.who }}" }
"""


def test_resume_last_uses_the_old_inputs_without_asking_again(project: ProjectDir) -> None:
    project.write("workflows/greet.yaml", FLAKY)
    first = project.cli("run", "greet", "-i", "who=Ada")
    assert first.exit_code == 1, first.output
    resumed = project.cli("run", "greet", "--resume", "last")
    assert resumed.exit_code == 0, resumed.output
    assert (project.root / "greeted.txt").read_text() == "Ada\n"


def test_resume_with_new_inputs_is_refused_instead_of_ignoring_them(project: ProjectDir) -> None:
    project.write("workflows/greet.yaml", FLAKY)
    assert project.cli("run", "greet", "-i", "who=Ada").exit_code == 1
    refused = project.cli("run", "greet", "--resume", "last", "-i", "who=Bob")
    assert refused.exit_code == 2
    assert "--resume re-runs with the inputs of the run it resumes" in refused.stderr
    assert not (project.root / "greeted.txt").exists()


ECHO = """
    name: show
    steps:
      - id: show
        run: |
          echo "token is $API_TOKEN"
          printf '%s|%s\\n' "$API_TOKEN" "$SPACED" > seen.txt
"""


def test_dotenv_values_reach_the_run_and_are_redacted(project: ProjectDir) -> None:
    project.write("workflows/show.yaml", ECHO)
    project.write(".env", """
        # keys for local runs
        export API_TOKEN=tok-3f9a8c1d77
        SPACED="two words # not a comment"
    """)
    ran = project.cli("run", "show", "-v", "--events", "ev.jsonl", env={"API_TOKEN": None, "SPACED": None})  # type: ignore[dict-item]
    assert ran.exit_code == 0, ran.output
    assert (project.root / "seen.txt").read_text() == "tok-3f9a8c1d77|two words # not a comment\n"
    assert "token is" in ran.stdout
    assert "tok-3f9a8c1d77" not in ran.output
    assert "tok-3f9a8c1d77" not in (project.root / "ev.jsonl").read_text()
    assert b"tok-3f9a8c1d77" not in (project.root / ".orchestr/state.db").read_bytes()


def test_the_real_environment_wins_over_dotenv(project: ProjectDir) -> None:
    project.write("workflows/show.yaml", ECHO)
    project.write(".env", "API_TOKEN=from-dotenv\nSPACED=x\n")
    ran = project.cli("run", "show", env={"API_TOKEN": "from-environment"})
    assert ran.exit_code == 0, ran.output
    assert (project.root / "seen.txt").read_text().startswith("from-environment|")


def test_a_broken_dotenv_line_is_reported_at_its_place(project: ProjectDir) -> None:
    project.write("workflows/show.yaml", ECHO)
    project.write(".env", "API_TOKEN=ok\nthis is not an assignment\n")
    ran = project.cli("run", "show")
    assert ran.exit_code == 2
    assert ".env:2:1: error: expected KEY=value in .env" in ran.stderr
    assert "Traceback" not in ran.output


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


def test_an_api_key_in_dotenv_runs_the_scaffolded_agent(project: ProjectDir, server: FakeLLMServer) -> None:
    project.cli("init")
    project.write(".env", f"ANTHROPIC_API_KEY=sk-ant-dotenv-5e1f\nANTHROPIC_BASE_URL={server.anthropic_base_url}\n")
    server.anthropic.enqueue(
        Reply.tool_calls(ToolCall("write_file", {"path": "out/summary.md", "content": "# Summary\n"})),
        Reply.text("done"),
    )
    ran = project.cli("run", "summarize", "--events", "ev.jsonl",
                      env={"ANTHROPIC_API_KEY": None, "ANTHROPIC_BASE_URL": None})  # type: ignore[dict-item]
    assert ran.exit_code == 0, ran.output
    assert "sk-ant-dotenv-5e1f" in json.dumps(server.anthropic.requests[0].headers), server.anthropic.requests[0].headers
    assert (project.root / "out/summary.md").read_text() == "# Summary\n"
    events = (project.root / "ev.jsonl").read_text()
    assert "sk-ant-dotenv-5e1f" not in events and json.loads(events.splitlines()[0])
