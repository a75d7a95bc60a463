"""Issue 11, item 2: the file tools cannot be raced outside the project (a thread swapping a folder
for a symlink over thousands of calls), a FIFO or a huge file is handled, a failed write leaves no
temp file, and a context node file that is a symlink out of the project is refused."""

from __future__ import annotations

import json
import os
import resource
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestr.permissions import EffectivePermissions, PermissionLevel
from orchestr.tools.builtin import ToolContext, call_builtin
from tests.conftest import ProjectDir
from tests.fakeapi import FakeLLMServer, Reply, ToolCall

LEVEL = PermissionLevel("context t", tools=("read_file", "write_file", "list_files"), read=("**",), write=("out/**",))
CALLS = 3000


def _ctx(root: Path, *, max_output: int = 64_000) -> ToolContext:
    return ToolContext(root=root, permissions=EffectivePermissions((LEVEL,)), max_output=max_output)


@pytest.fixture
def swapping(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """`root/out/real` flips between a folder and a symlink to `outside` until the test ends."""
    root, outside = tmp_path / "project", tmp_path / "outside"
    (root / "out").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("OUTSIDE")
    stop = threading.Event()

    def swap() -> None:
        real, aside = root / "out" / "real", root / "out" / "aside"
        aside.mkdir()
        (aside / "secret.txt").write_text("inside")
        while not stop.is_set():
            try:
                os.rename(aside, real)
                os.rename(real, aside)
                os.symlink(outside, real)
                os.unlink(real)
            except OSError:  # write_file made `out/real` while it was missing: clear it, go on
                if real.is_dir() and not real.is_symlink():
                    shutil.rmtree(real, ignore_errors=True)

    thread = threading.Thread(target=swap, daemon=True)
    thread.start()
    yield root, outside
    stop.set()
    thread.join()


def test_a_swapping_symlink_never_lets_a_tool_outside(swapping: tuple[Path, Path]) -> None:
    root, outside = swapping
    ctx = _ctx(root)
    outcomes: dict[str, int] = {}
    escaped_reads = 0
    for i in range(CALLS):
        wrote = call_builtin("write_file", {"path": f"out/real/f{i}.txt", "content": "x"}, ctx)
        read = call_builtin("read_file", {"path": "out/real/secret.txt"}, ctx)
        listed = call_builtin("list_files", {"path": "out/real"}, ctx)
        escaped_reads += "OUTSIDE" in read.content
        for result in (wrote, read, listed):
            outcomes[result.outcome] = outcomes.get(result.outcome, 0) + 1
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]  # 0 files created outside
    assert escaped_reads == 0
    assert outcomes.get("ok", 0) > 0  # the race was real: some calls got through, inside
    # (os.walk: the swapping thread still runs, and a folder may vanish under a glob)
    assert not [name for _, _, names in os.walk(root / "out") for name in names if name.startswith(".") and name.endswith(".tmp")]


def test_read_file_of_a_fifo_returns_at_once(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    result = call_builtin("read_file", {"path": "pipe"}, _ctx(tmp_path))
    assert result.outcome == "error" and "not a regular file" in result.content


def test_read_file_of_a_huge_file_reads_only_what_it_can_show(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    with big.open("wb") as handle:
        handle.truncate(1_500_000_000)  # sparse: 1.5 GB of NULs costs no disk
        handle.seek(0)
        handle.write(b"a" * 200_000)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = call_builtin("read_file", {"path": "big.txt"}, _ctx(tmp_path, max_output=1000))
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert result.outcome == "ok" and "truncated" in result.content
    assert grown_kb < 100_000  # it was 1.6 GB


def test_write_file_onto_a_folder_fails_and_leaves_no_temp_file(tmp_path: Path) -> None:
    (tmp_path / "out" / "dir").mkdir(parents=True)
    result = call_builtin("write_file", {"path": "out/dir", "content": "model text"}, _ctx(tmp_path))
    assert result.outcome == "error" and "is a folder" in result.content
    leftovers = [p for p in tmp_path.rglob("*") if p.name.startswith(".")]
    assert leftovers == []


def test_a_symlink_inside_the_project_is_read_through_its_real_path(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("hello")
    (tmp_path / "link").symlink_to(tmp_path / "data")
    result = call_builtin("read_file", {"path": "link/a.txt"}, _ctx(tmp_path))
    assert (result.outcome, result.content) == ("ok", "hello")


def test_an_agent_reading_a_fifo_gets_a_tool_error_and_the_run_goes_on(project: ProjectDir) -> None:
    os.mkfifo(project.root / "pipe")
    project.write("contexts/c.yaml", """
        title: C
        permissions: { tools: [read_file] }
    """)
    project.write("workflows/w.yaml", """
        name: w
        context: c
        agents:
          reader: { model: "anthropic:claude-sonnet-4-6", instructions: Read., tools: [read_file] }
        steps:
          - id: read
            agent: reader
            timeout: 60s
            prompt: Read the pipe.
    """)
    with FakeLLMServer() as server:
        server.anthropic.enqueue(Reply.tool_calls(ToolCall("read_file", {"path": "pipe"})), Reply.text("done"))
        result = project.run("run", "w", "-q", "--events", "ev.jsonl", env=server.env(), timeout=60)
    assert result.exit_code == 0, result.output
    calls = [json.loads(line) for line in (project.root / "ev.jsonl").read_text().splitlines()]
    tool = [e for e in calls if e["event"] == "tool.call"]
    assert tool and tool[0]["outcome"] == "error"


def test_a_context_node_file_that_is_a_symlink_out_of_the_project_is_refused(project: ProjectDir,
                                                                               tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside") / "evil.yaml"
    outside.write_text("title: Evil\ndescription: OUTSIDE TEXT\n")
    (project.root / "contexts").mkdir()
    (project.root / "contexts" / "evil.yaml").symlink_to(outside)
    project.write("workflows/w.yaml", """
        name: w
        steps:
          - id: a
            run: "true"
    """)
    result = project.cli("validate")
    assert result.exit_code == 2, result.output
    assert "contexts/evil.yaml" in result.output and "outside the project" in result.output
