"""The built-in tools: read_file, write_file, list_files, run_command, http_request.

Every call is checked against the step's effective permissions before it acts. A model's
mistake (bad arguments, a denied path) becomes a result the model can read, never an exception.
"""

from __future__ import annotations

import contextlib
import http.client
import re
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from orchestr.governance import Governance
from orchestr.interruption import NEVER, Interrupted, Stop, wait_future
from orchestr.permissions import EffectivePermissions, PathDenied, resolve_in_root
from orchestr.processes import ProcessRegistry, run_process
from orchestr.providers.base import Image
from orchestr.tools import safefs
from orchestr.tools.sandbox import SandboxRefused

Outcome = Literal["ok", "denied", "error"]
MAX_LIST_ENTRIES = 500


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class ServerLog:
    """A log notification from an MCP server (warning and above), for the step's trace."""

    server: str
    level: str
    logger: str | None
    message: str


@dataclass(frozen=True)
class ToolResult:
    outcome: Outcome
    content: str  # what the model reads (an image is named here by type and size too)
    images: tuple[Image, ...] = ()  # sent as image blocks to providers that take them (Anthropic)


@dataclass(frozen=True)
class ToolContext:
    root: Path
    permissions: EffectivePermissions
    timeout: float = 30.0
    max_output: int = 64_000
    env: Mapping[str, str] = field(default_factory=dict)
    stop: Stop = NEVER  # the step's deadline and cancel: a command or request in flight gives up on either
    processes: ProcessRegistry | None = None  # the run's process groups, stopped on cancel
    governance: Governance = field(default_factory=Governance.for_state_dir)
    # with `sandbox: true`: turns run_command's argv into the sandboxed one (raises SandboxRefused)
    sandbox: Callable[[list[str]], list[str]] | None = None


def _schema(required: list[str], **props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


_STR = {"type": "string"}
BUILTIN_TOOLS: Mapping[str, ToolSpec] = {
    "read_file": ToolSpec("read_file", "Read a text file of the project (path relative to the project root).",
                          _schema(["path"], path=_STR)),
    "write_file": ToolSpec("write_file", "Create or replace a text file of the project (path relative to the project root).",
                           _schema(["path", "content"], path=_STR, content=_STR)),
    "list_files": ToolSpec("list_files", "List a folder of the project (path relative to the project root; '.' for the root).",
                           _schema(["path"], path=_STR)),
    "run_command": ToolSpec("run_command", "Run an allowed command as an argv list (no shell). Returns exit code and output.",
                            _schema(["argv"], argv={"type": "array", "items": _STR, "minItems": 1})),
    "http_request": ToolSpec("http_request", "Make an HTTP request to an allowed host.",
                             _schema(["method", "url"], method=_STR, url=_STR,
                                     headers={"type": "object", "additionalProperties": _STR}, body=_STR)),
}


class _Refused(Exception):
    def __init__(self, outcome: Outcome, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome


def _arg(args: Mapping[str, object], name: str, kind: type, *, required: bool = True) -> Any:
    value = args.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, kind):
        raise _Refused("error", f"argument {name!r} must be a {kind.__name__}")
    return value


def _path(ctx: ToolContext, raw: str, *, write: bool) -> tuple[Path, str]:
    try:
        path = resolve_in_root(ctx.root, raw)
    except PathDenied as exc:
        raise _Refused("denied", f"denied: {exc}") from None
    relative = path.relative_to(ctx.root.resolve()).as_posix() if path != ctx.root.resolve() else "."
    protected = ctx.governance.protecting(relative) if write else None
    if protected is not None:
        raise _Refused("denied", f"denied: {relative!r} is in {protected}, which governs agents: no tool may "
                       "write it, whatever the permissions say")
    decision = ctx.permissions.check_write(relative) if write else ctx.permissions.check_read(relative)
    if not decision.allowed:
        raise _Refused("denied", f"denied: {decision.reason}")
    return path, relative


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n[... truncated at {limit} characters]"


def _read_file(args: Mapping[str, object], ctx: ToolContext) -> str:
    _, relative = _path(ctx, _arg(args, "path", str), write=False)
    # utf-8 needs at most 4 bytes a character: more than this can never be shown
    data, more = safefs.read_file(ctx.root, relative, limit=ctx.max_output * 4)
    if b"\x00" in data[:8192]:
        raise _Refused("error", f"{relative} is a binary file")
    text = data.decode("utf-8", errors="replace")
    if more and len(text) <= ctx.max_output:
        text += f"\n[... truncated at {len(data)} bytes]"
    return _truncate(text, ctx.max_output)


def _write_file(args: Mapping[str, object], ctx: ToolContext) -> str:
    _, relative = _path(ctx, _arg(args, "path", str), write=True)
    content: str = _arg(args, "content", str)
    data = content.encode("utf-8", errors="surrogatepass")
    safefs.write_file(ctx.root, relative, data)
    return f"wrote {len(data)} bytes to {relative}"


def _list_files(args: Mapping[str, object], ctx: ToolContext) -> str:
    _, relative = _path(ctx, _arg(args, "path", str), write=False)
    try:
        entries = safefs.list_folder(ctx.root, relative)
    except NotADirectoryError:
        raise _Refused("error", f"{relative} is not a folder") from None
    shown = entries[:MAX_LIST_ENTRIES]
    more = f"\n[... {len(entries) - len(shown)} more]" if len(entries) > len(shown) else ""
    return "\n".join(shown) + more if shown else "(empty folder)"


def _run_command(args: Mapping[str, object], ctx: ToolContext) -> str:
    argv = _arg(args, "argv", list)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise _Refused("error", "argument 'argv' must be a non-empty list of strings")
    decision = ctx.permissions.check_command(argv)
    if not decision.allowed:
        raise _Refused("denied", f"denied: {decision.reason}")
    if ctx.sandbox is not None:
        try:
            argv = ctx.sandbox(argv)
        except SandboxRefused as exc:
            raise _Refused("error", f"cannot run {argv[0]!r} in the sandbox: {exc}") from None
    try:
        done = run_process(argv, cwd=ctx.root, env=ctx.env, timeout=ctx.stop.bound(ctx.timeout),
                           registry=ctx.processes)
    except OSError as exc:
        raise _Refused("error", f"cannot run {argv[0]!r}: {exc.strerror}") from None
    ctx.stop.check()  # cut by the step's deadline or by cancel: the step's outcome, not the tool's
    if done.timed_out:
        raise _Refused("error", f"timed out after {ctx.timeout:g}s; the command was stopped")
    text = f"exit code: {done.exit_code}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    return _truncate(text, ctx.max_output)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a redirect could leave the allow-list: hand it back to the model instead


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+\Z")  # RFC 9110 token: a method or a header name
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters (a tab is allowed)


def _http_args(args: Mapping[str, object]) -> tuple[str, str, dict[str, str], str | None]:
    """The request's method, URL, headers and body, or a refusal the model can read and fix."""
    method = _arg(args, "method", str).upper()
    if not _TOKEN.match(method):
        raise _Refused("error", f"method {method!r} is not an HTTP method (letters such as GET or POST)")
    url: str = _arg(args, "url", str)
    if _BAD_VALUE.search(url) or " " in url:
        raise _Refused("error", "url must not contain spaces, CR, LF or other control characters")
    try:
        parsed = urllib.parse.urlsplit(url)
        parsed.port  # noqa: B018 - raises ValueError on a port that is not a number in range
    except ValueError as exc:
        raise _Refused("error", f"url {url!r} is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise _Refused("error", "url must be an http:// or https:// URL with a host")
    headers = _arg(args, "headers", dict, required=False) or {}
    clean: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise _Refused("error", f"header name {name!r} is not valid (no spaces, colons or control characters)")
        if not isinstance(value, str) or _BAD_VALUE.search(value):
            raise _Refused("error", f"header {name!r} must be a string without CR, LF or control characters")
        clean[name] = value
    return method, url, clean, _arg(args, "body", str, required=False)


def _http_request(args: Mapping[str, object], ctx: ToolContext) -> str:
    method, url, headers, body = _http_args(args)
    parsed = urllib.parse.urlsplit(url)
    assert parsed.hostname is not None
    decision = ctx.permissions.check_host(parsed.hostname)
    if not decision.allowed:
        raise _Refused("denied", f"denied: {decision.reason}")
    request = urllib.request.Request(url, method=method, headers=headers,
                                     data=body.encode() if body is not None else None)
    status, text = _fetch(request, ctx)
    return f"status: {status}\n" + _truncate(text, ctx.max_output)


class _Sockets:
    """The connections one request opened, so that a waiting thread can abort them."""

    def __init__(self) -> None:
        self._connections: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def track(self, connection: http.client.HTTPConnection) -> http.client.HTTPConnection:
        with self._lock:
            self._connections.append(connection)
        return connection

    def abort(self) -> None:
        """Shut the sockets down: unlike close(), this wakes a thread blocked reading them."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            if connection.sock is not None:
                with contextlib.suppress(OSError):  # already closed by the other side
                    connection.sock.shutdown(socket.SHUT_RDWR)


def _opener(sockets: _Sockets) -> urllib.request.OpenerDirector:
    class Http(urllib.request.HTTPHandler):
        def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(lambda host, **kw: sockets.track(http.client.HTTPConnection(host, **kw)), req)

    class Https(urllib.request.HTTPSHandler):
        def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
            return self.do_open(lambda host, **kw: sockets.track(http.client.HTTPSConnection(host, **kw)), req)

    return urllib.request.build_opener(_NoRedirect, Http, Https)


def _fetch(request: urllib.request.Request, ctx: ToolContext) -> tuple[int, str]:
    """The request runs in a daemon thread; this one waits, and aborts it on the step's stop."""
    sockets = _Sockets()
    done: Future[tuple[int, str]] = Future()

    def fetch() -> None:
        try:
            done.set_result(_read(_opener(sockets), request, ctx))
        except BaseException as exc:  # handed to the waiting thread, which re-raises it
            done.set_exception(exc)

    threading.Thread(target=fetch, name="orchestr-http", daemon=True).start()
    try:
        return wait_future(done, ctx.stop)
    except Interrupted:
        sockets.abort()
        raise


def _read(opener: urllib.request.OpenerDirector, request: urllib.request.Request, ctx: ToolContext) -> tuple[int, str]:
    try:
        with opener.open(request, timeout=ctx.stop.bound(ctx.timeout)) as response:
            return response.status, response.read(ctx.max_output + 1).decode("utf-8", errors="replace")
    except urllib.error.HTTPError as exc:
        text = exc.read(ctx.max_output + 1).decode("utf-8", errors="replace")
        exc.close()
        return exc.code, text
    except (urllib.error.URLError, OSError) as exc:
        raise _Refused("error", f"request failed: {getattr(exc, 'reason', exc)}") from None
    except (http.client.HTTPException, ValueError, UnicodeError) as exc:  # a malformed reply or request
        raise _Refused("error", f"request failed: {type(exc).__name__}: {exc}") from None


_ACTIONS: Mapping[str, Callable[[Mapping[str, object], ToolContext], str]] = {
    "read_file": _read_file, "write_file": _write_file, "list_files": _list_files,
    "run_command": _run_command, "http_request": _http_request,
}


def call_builtin(name: str, args: Mapping[str, object], ctx: ToolContext) -> ToolResult:
    """Check the tool, then the action's own permission, then act."""
    if name not in _ACTIONS:
        return ToolResult("error", f"unknown tool {name!r}")
    decision = ctx.permissions.check_tool(name)
    if not decision.allowed:
        return ToolResult("denied", f"denied: {decision.reason}")
    try:
        return ToolResult("ok", _ACTIONS[name](args, ctx))
    except _Refused as refused:
        return ToolResult(refused.outcome, str(refused))
    except safefs.Refused as refused:
        return ToolResult("error", str(refused))
    except OSError as exc:
        return ToolResult("error", f"{name} failed: {exc.strerror or exc}")
    except (ValueError, TypeError, UnicodeError) as exc:  # hostile arguments never crash the run
        return ToolResult("error", f"{name} failed: {type(exc).__name__}: {exc}")
