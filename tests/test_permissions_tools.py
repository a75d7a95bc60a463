"""Permission levels and the built-in tools: every escape attempt is denied, never executed."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestr.permissions import (
    Decision,
    EffectivePermissions,
    PermissionLevel,
    glob_match,
    subsumes,
)
from orchestr.tools.builtin import ToolContext, call_builtin


@pytest.mark.parametrize(("pattern", "text", "expected"), [
    ("out/**", "out/a/b.json", True),
    ("out/**", "out", True),
    ("out/**", "outside/x", False),
    ("out/*.json", "out/a.json", True),
    ("out/*.json", "out/a/b.json", False),
    ("data/?.csv", "data/a.csv", True),
    ("**", "anything/at/all", True),
    ("time.*", "time.get_current_time", True),
    ("read_file", "read_files", False),
])
def test_glob(pattern: str, text: str, expected: bool) -> None:
    assert glob_match(pattern, text) is expected


def _perms(*levels: PermissionLevel) -> EffectivePermissions:
    return EffectivePermissions(levels)


ROOT = PermissionLevel("context acme", tools=("read_file", "write_file", "list_files", "run_command", "http_request"), read=("**",),
                       write=("out/**", "data/**"), commands=("python3 scripts/report.py", "sh -c"))
CHILD = PermissionLevel("context acme/support", write=("out/support/**",))
AGENT = PermissionLevel("agent triager", tools=("read_file", "write_file"))


def test_every_level_that_sets_a_key_must_allow() -> None:
    perms = _perms(ROOT, CHILD, AGENT)
    assert perms.check_write("out/support/t.json").allowed
    denied = perms.check_write("out/sales/t.json")
    assert not denied.allowed and "context acme/support" in denied.reason and "out/support/**" in denied.reason
    assert perms.check_read("anything/here").allowed
    assert not perms.check_tool("run_command").allowed  # the agent level did not list it
    assert perms.summary()["write"] == ["out/support/**"]


def test_commands_and_hosts_are_denied_when_no_level_sets_them() -> None:
    perms = _perms(PermissionLevel("context x", tools=("run_command",)))
    assert not perms.check_command(["ls"]).allowed
    assert not perms.check_host("example.com").allowed
    assert perms.check_write("anywhere/in/project").allowed


def test_commands_match_as_argv_prefixes() -> None:
    perms = _perms(ROOT)
    assert perms.check_command(["python3", "scripts/report.py", "--since", "1h"]).allowed
    assert not perms.check_command(["python3", "-c", "import os"]).allowed
    assert not perms.check_command(["python3", "scripts/report.py.evil"]).allowed


def test_subsumes() -> None:
    assert subsumes(["out/**"], "out/reports/**", "write")
    assert not subsumes(["out/**"], "secrets/**", "write")
    assert subsumes(["python3 scripts/x.py"], "python3 scripts/x.py --flag", "commands")
    assert not subsumes(["python3 scripts"], "python3 scripts/x.py", "commands")
    assert subsumes(["*.acme.example"], "API.acme.example", "hosts")


@pytest.fixture
def ctx(tmp_path: Path) -> ToolContext:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.txt").write_text("hello\n")
    hosts = PermissionLevel("context acme/ops", hosts=("127.0.0.1", "api.acme.example"))
    perms = _perms(ROOT, hosts, PermissionLevel("agent a", tools=("read_file", "write_file", "list_files", "run_command",
                                                                  "http_request"), hosts=("127.0.0.1",)))
    return ToolContext(root=tmp_path, permissions=perms, timeout=3.0, env={"PATH": os.environ["PATH"]})


def test_read_write_list(ctx: ToolContext) -> None:
    assert call_builtin("read_file", {"path": "data/in.txt"}, ctx).content == "hello\n"
    written = call_builtin("write_file", {"path": "out/deep/x.json", "content": "{}"}, ctx)
    assert written.outcome == "ok" and (ctx.root / "out/deep/x.json").read_text() == "{}"
    assert call_builtin("list_files", {"path": "."}, ctx).content == "data/\nout/"
    assert call_builtin("read_file", {"path": "missing.txt"}, ctx).outcome == "error"
    assert call_builtin("read_file", {}, ctx).outcome == "error"


def test_write_outside_allowed_globs_is_denied(ctx: ToolContext) -> None:
    result = call_builtin("write_file", {"path": "scripts/x.py", "content": "x"}, ctx)
    assert result.outcome == "denied" and "out/**" in result.content
    assert not (ctx.root / "scripts").exists()


@pytest.mark.parametrize("path", ["../escape.txt", "/etc/passwd", "out/../../escape.txt", "out/\x00x", ""])
def test_path_escapes_are_denied(ctx: ToolContext, path: str) -> None:
    for tool, args in (("read_file", {"path": path}), ("write_file", {"path": path, "content": "x"})):
        result = call_builtin(tool, args, ctx)
        assert result.outcome == "denied", (tool, path, result)
    assert not (ctx.root.parent / "escape.txt").exists()


def test_symlink_escapes_are_denied(ctx: ToolContext, tmp_path_factory: pytest.TempPathFactory) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("secret")
    (ctx.root / "data" / "link.txt").symlink_to(outside / "secret.txt")
    (ctx.root / "out").mkdir()
    (ctx.root / "out" / "dir").symlink_to(outside, target_is_directory=True)
    assert call_builtin("read_file", {"path": "data/link.txt"}, ctx).outcome == "denied"
    assert call_builtin("write_file", {"path": "out/dir/new.txt", "content": "x"}, ctx).outcome == "denied"
    assert not (outside / "new.txt").exists()
    (ctx.root / "data" / "inside.txt").symlink_to(ctx.root / "data" / "in.txt")
    assert call_builtin("read_file", {"path": "data/inside.txt"}, ctx).content == "hello\n"


def test_run_command_passes_arguments_literally(ctx: ToolContext) -> None:
    (ctx.root / "scripts").mkdir()
    (ctx.root / "scripts" / "report.py").write_text("import sys; print('args', sys.argv[1:])")
    result = call_builtin("run_command", {"argv": ["python3", "scripts/report.py", "; touch pwned", "$(touch pwned2)"]}, ctx)
    assert result.outcome == "ok" and "exit code: 0" in result.content
    assert "'; touch pwned', '$(touch pwned2)'" in result.content
    assert not list(ctx.root.glob("pwned*"))
    denied = call_builtin("run_command", {"argv": ["python3", "-c", "open('pwned','w')"]}, ctx)
    assert denied.outcome == "denied" and not (ctx.root / "pwned").exists()


def test_run_command_timeout_stops_children(ctx: ToolContext) -> None:
    began = time.monotonic()
    result = call_builtin("run_command", {"argv": ["sh", "-c", "sleep 30 & echo $! > child.pid; sleep 30"]}, ctx)
    assert result.outcome == "error" and "timed out" in result.content
    assert time.monotonic() - began < 10
    pid = int((ctx.root / "child.pid").read_text())
    time.sleep(0.2)
    assert not Path(f"/proc/{pid}").exists() or "State:\tZ" in Path(f"/proc/{pid}/status").read_text()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "http://evil.example/steal")
            self.end_headers()
            return
        body = b"pong"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_http_request_allow_list_and_redirects(ctx: ToolContext, server: str) -> None:
    ok = call_builtin("http_request", {"method": "GET", "url": f"{server}/ping"}, ctx)
    assert ok.outcome == "ok" and ok.content == "status: 200\npong"
    denied = call_builtin("http_request", {"method": "GET", "url": "http://example.com/"}, ctx)
    assert denied.outcome == "denied" and "127.0.0.1" in denied.content
    redirected = call_builtin("http_request", {"method": "GET", "url": f"{server}/redirect"}, ctx)
    assert redirected.content.startswith("status: 302")


def test_an_agent_cannot_give_itself_commands_or_hosts_its_context_never_allowed() -> None:
    context = PermissionLevel(source="context acme", tools=("run_command", "http_request"), read=("**",))
    agent = PermissionLevel(source="agent ops", commands=("rm -rf",), hosts=("evil.example",))
    perms = EffectivePermissions((context, agent))
    assert perms.check_command(["rm", "-rf", "/"]) == Decision(
        False, "command rm -rf / denied: no context in the chain allows any commands")
    assert not perms.check_host("evil.example").allowed
    # With the context's say-so the agent's level narrows as usual.
    granted = PermissionLevel(source="context acme", commands=("git",), hosts=("api.acme.example",))
    narrowed = EffectivePermissions((granted, PermissionLevel(source="agent ops", commands=("git status",))))
    assert narrowed.check_command(["git", "status"]).allowed
    assert not narrowed.check_command(["git", "push"]).allowed
    # A workflow without any context: the agent's own permissions are all there is.
    assert EffectivePermissions((agent,)).check_command(["rm", "-rf", "x"]).allowed
