"""The live view moves: spinners animate, steps say what they wait on; CI gets heartbeats and GitHub markup."""

from __future__ import annotations

import io
import itertools
import re
import time
from collections.abc import Iterator

import pytest
from rich.console import Console

from orchestr.events import EventBus, Redactor
from orchestr.trace import LiveTrace
from tests.conftest import ProjectDir
from tests.fakeapi import FakeLLMServer, Reply, ToolCall

DOTS = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _frame(text: str) -> str:
    found = [c for c in text if c in DOTS]
    assert found, text
    return found[0]


def test_the_panel_animates_and_says_what_each_step_waits_on() -> None:
    clock = Clock()
    console = Console(file=io.StringIO(), force_terminal=True, width=80, get_time=clock, color_system=None)
    trace = LiveTrace(console)
    bus = EventBus(run="r1", workflow="wf", redactor=Redactor([]), sinks=[trace], log_sinks=[trace])
    bus.emit("step.started", step="triage", attempt=2, kind="agent")
    bus.activity("triage", 2, "turn 2/8: waiting on anthropic:claude-sonnet-4-6")
    captures = []
    for _ in range(12):
        with console.capture() as capture:
            console.print(trace.panel())
        captures.append(capture.get())
        clock.now += 0.130
    frames = [_frame(c) for c in captures]
    assert all(a != b for a, b in itertools.pairwise(frames)), frames  # every capture moved
    assert "attempt 2" in captures[0] and "turn 2/8: waiting on anthropic:claude-sonnet-4-6" in captures[0]
    assert "0.0s" in captures[0] and "1.4s" in captures[-1]  # the elapsed time moves too
    bus.emit("step.finished", step="triage", attempt=2, status="succeeded", reason=None, attempts=2, duration_ms=1.0)
    with console.capture() as capture:
        console.print(trace.panel())
    assert "triage" not in capture.get()


def test_the_live_refresh_shows_many_frames_on_a_terminal() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, color_system=None)
    trace = LiveTrace(console)
    bus = EventBus(run="r1", workflow="wf", redactor=Redactor([]), sinks=[trace])
    with trace:
        bus.emit("step.started", step="build", attempt=1, kind="shell")
        time.sleep(1.5)
    frames = {c for c in out.getvalue() if c in DOTS}
    assert len(frames) >= 3, out.getvalue()[-500:]


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


def test_ci_output_has_a_heartbeat_naming_the_model_call_in_progress(project: ProjectDir,
                                                                    server: FakeLLMServer) -> None:
    project.write("contexts/acme.yaml", """
        title: Acme
        permissions: { tools: [write_file], write: ["out/**"] }
    """)
    project.write("workflows/slow.yaml", """
        name: slow
        context: acme
        agents:
          thinker: { model: "anthropic:claude-sonnet-4-6", instructions: Think., tools: [write_file] }
        steps:
          - id: think
            agent: thinker
            prompt: Write out/x.txt.
            verify: [ { file_exists: out/x.txt } ]
    """)
    server.anthropic.enqueue(Reply.tool_calls(ToolCall("write_file", {"path": "out/x.txt", "content": "x"}), delay=2.0),
                             Reply.text("done"))
    result = project.cli("run", "slow", env={**server.env(), "ORCHESTR_HEARTBEAT_SECONDS": "0.4"})
    assert result.exit_code == 0, result.output
    beats = [line for line in result.stdout.splitlines() if "still running after" in line]
    assert beats, result.stdout
    assert "think still running after" in beats[0]
    # the first beats may fall while the SDK is imported; the model call is 2 s long
    assert any("(attempt 1: turn 1/20: waiting on anthropic:claude-sonnet-4-6)" in b for b in beats), beats
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z … ", beats[0])


def test_a_quiet_step_without_heartbeat_prints_nothing_extra(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", """
        name: w
        steps: [ { id: nap, run: "sleep 1" } ]
    """)
    result = project.cli("run", "w", env={"ORCHESTR_HEARTBEAT_SECONDS": "0"})
    assert result.exit_code == 0 and "still running" not in result.stdout
    bad = project.cli("run", "w", env={"ORCHESTR_HEARTBEAT_SECONDS": "soon"})
    assert bad.exit_code == 2 and "ORCHESTR_HEARTBEAT_SECONDS='soon'" in bad.stderr


def test_github_actions_gets_a_group_per_step_and_error_annotations(project: ProjectDir) -> None:
    project.write("workflows/gh.yaml", """
        name: gh
        steps:
          - id: fine
            run: "echo all good"
          - id: broken
            run: "echo about to fail; exit 3"
          - id: unchecked
            run: "true"
            verify:
              - file_exists: out/missing.txt
    """)
    result = project.run("run", "gh", env={"GITHUB_ACTIONS": "true", "ORCHESTR_HEARTBEAT_SECONDS": "0"})
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert "::group::✓ fine succeeded" in "\n".join(lines)
    opened = [i for i, line in enumerate(lines) if line.startswith("::group::")]
    closed = [i for i, line in enumerate(lines) if line == "::endgroup::"]
    assert len(opened) == len(closed) == 3
    assert all(o < c for o, c in zip(opened, closed, strict=True))
    fine = opened[next(i for i, o in enumerate(opened) if "fine" in lines[o])]
    assert any("all good" in line for line in lines[fine:closed[opened.index(fine)]])  # output inside its group
    errors = [line for line in lines if line.startswith("::error ")]
    assert len(errors) == 2, result.stdout
    assert any(e.startswith("::error file=workflows/gh.yaml,line=5,title=step broken failed::") for e in errors)
    assert any(e.startswith("::error file=workflows/gh.yaml,line=7,title=step unchecked unverified::file_exists")
               for e in errors)
