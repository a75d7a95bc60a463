"""Issue 11, item 5: hostile tool arguments are tool errors returned to the model, never a crash;
bad output paths are a clear error (exit 2) before the run starts, an unwritable runs folder too (exit 1)."""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestr.permissions import EffectivePermissions, PermissionLevel
from orchestr.tools.builtin import ToolContext, call_builtin
from tests.conftest import ProjectDir

LEVEL = PermissionLevel("context t", tools=("read_file", "write_file", "list_files", "run_command", "http_request"),
                        read=("**",), write=("out/**",), commands=("echo",), hosts=("localhost", "127.0.0.1"))


@pytest.fixture
def server() -> Iterator[str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _ctx(root: Path) -> ToolContext:
    return ToolContext(root=root, permissions=EffectivePermissions((LEVEL,)), timeout=5.0)


@pytest.mark.parametrize("args", [
    {"method": "GET", "url": "http://localhost:abc/"},
    {"method": "GET", "url": "http://localhost:99999/"},
    {"method": "GET", "url": "http://127.0.0.1/\r\nX-Evil: 1"},
    {"method": "GET\r\nX-Evil: 1", "url": "http://127.0.0.1/"},
    {"method": "GET", "url": "http://127.0.0.1/", "headers": {"X-A": "1\r\nX-Evil: 1"}},
    {"method": "GET", "url": "http://127.0.0.1/", "headers": {"X A": "1"}},
    {"method": "G T", "url": "http://127.0.0.1/"},
    {"method": "GET", "url": "http://127.0.0.1/", "headers": {"X-A": "caf\u00e9\u4e2d"}},
    {"method": "GET", "url": "http://[::1/"},
])
def test_each_malformed_request_is_a_tool_error(tmp_path: Path, args: dict[str, object]) -> None:
    result = call_builtin("http_request", args, _ctx(tmp_path))
    assert result.outcome == "error", result
    assert result.content


def test_a_valid_request_still_works(tmp_path: Path, server: str) -> None:
    result = call_builtin("http_request", {"method": "get", "url": server + "/x", "headers": {"X-Ok": "a\tb"}},
                          _ctx(tmp_path))
    assert (result.outcome, result.content) == ("ok", "status: 200\nhello")


_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=30)
_VALUE = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | _TEXT,
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
                      max_leaves=6)
_URL = st.one_of(_TEXT, st.builds(lambda port, tail: f"http://127.0.0.1:{port}{tail}", _TEXT, _TEXT))
_ARGS = st.fixed_dictionaries({}, optional={"method": st.one_of(_TEXT, _VALUE), "url": st.one_of(_URL, _VALUE),
                                            "headers": st.one_of(st.dictionaries(_TEXT, _TEXT, max_size=3), _VALUE),
                                            "body": st.one_of(_TEXT, _VALUE), "path": st.one_of(_TEXT, _VALUE),
                                            "content": st.one_of(_TEXT, _VALUE), "argv": _VALUE})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["http_request", "read_file", "write_file", "list_files", "run_command"]), args=_ARGS)
def test_no_tool_argument_crashes_a_tool(tmp_path: Path, name: str, args: dict[str, object]) -> None:
    result = call_builtin(name, args, _ctx(tmp_path))
    assert result.outcome in ("ok", "denied", "error")
    assert isinstance(result.content, str)


def _workflow(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", """
        name: w
        steps:
          - id: a
            run: echo ran > ran.txt
    """)


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("--events", "/proc/nope/x", "--events /proc/nope/x"),
    ("--junit", "DIR", "--junit DIR"),
    ("--junit", "/proc/junit.xml", "--junit /proc/junit.xml"),
    ("--record", "DIR", "--record DIR"),
])
def test_an_unwritable_output_path_is_exit_2_before_the_run(project: ProjectDir, option: str, value: str,
                                                            expected: str) -> None:
    _workflow(project)
    (project.root / "DIR").mkdir()
    result = project.cli("run", "w", option, value)
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and "Traceback" not in result.output
    assert not (project.root / "ran.txt").exists()
    assert list((project.root / "DIR").iterdir()) == []


def test_a_runs_folder_that_is_a_file_is_a_clear_error(project: ProjectDir) -> None:
    _workflow(project)
    (project.root / ".orchestr").mkdir()
    (project.root / ".orchestr" / "runs").write_text("")
    result = project.cli("run", "w")
    assert result.exit_code == 1, result.output  # a state problem, like an unwritable state dir
    assert ".orchestr/runs is not writable" in result.stderr and "Traceback" not in result.output


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through read-only modes")
def test_an_unwritable_runs_folder_is_a_clear_error(project: ProjectDir) -> None:
    _workflow(project)
    assert project.cli("run", "w").exit_code == 0
    runs = project.root / ".orchestr" / "runs"
    runs.chmod(0o500)
    try:
        result = project.cli("run", "w")
    finally:
        runs.chmod(0o700)
    assert result.exit_code == 1, result.output
    assert "runs" in result.stderr and "not writable" in result.stderr
