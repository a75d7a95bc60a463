"""MCP servers' tools over stdio or Streamable HTTP, through the official `mcp` SDK: the toolbox's
`ToolServers`. A stdio server with a declared reach starts inside the sandbox (orchestr.tools.sandbox).

The engine is synchronous and threaded; the SDK is asyncio. The hub owns one event-loop thread,
started on first use. Each server is one long-lived task in that loop, started on first use: it
enters the transport and the session, then waits to be told to stop, so both contexts are entered
and left by the same task (anyio's cancel scopes require it). Sync methods submit coroutines to
the loop and wait for them, bounded.

    McpError (ToolServerError)   a server did not start or list its tools: the step fails with it
    a failing *call* is never an exception: it is a ToolResult("error", ...) the model reads
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import re
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO, TypeVar

import anyio
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp import types as mcp_types
from mcp.client.session import LoggingFnT
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from orchestr import __version__
from orchestr.governance import Governance
from orchestr.interruption import NEVER, Interrupted, Stop, WaitExpired, wait_future
from orchestr.models import McpServerSpec, expand_header
from orchestr.providers.base import Image
from orchestr.reach import server_reach
from orchestr.steps.toolbox import LogSink, ToolServerError
from orchestr.tools.builtin import ServerLog, ToolResult, ToolSpec
from orchestr.tools.sandbox import SandboxRefused, find_sandbox, sandboxed_argv

MAX_RESULT_CHARS = 64_000
LOG_LEVELS = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")
SHOWN_LOG_LEVEL: mcp_types.LoggingLevel = "warning"  # and above: what reaches the trace
KEPT_LOGS = 20
MAX_LOG_CHARS = 2_000
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
MAX_IMAGE_BYTES = 5 * 1024 * 1024
MAX_IMAGES = 8
MAX_TOOL_PAGES = 100
STDERR_TAIL_BYTES = 2_000
# Beyond a server's own timeouts: room for the SDK to stop its process (close stdin, TERM, KILL).
SHUTDOWN_GRACE_SECONDS = 8.0

T = TypeVar("T")
CLIENT = mcp_types.Implementation(name="orchestr", version=__version__)
Streams = tuple[Any, Any]  # the transport's (read, write) streams, as ClientSession takes them
Opener = Callable[[TextIO], AbstractAsyncContextManager[Streams]]


class McpError(ToolServerError):
    """An MCP server could not be started, or did not list its tools."""


class ServerLogs:
    """Where a server's log notifications (warning and above) go: to every call waiting on the server
    when one arrives (the model's calls, or the wait for it to start); those that come while nobody
    waits are kept, a few, for the next. Fed on the loop thread, listened to from the steps' threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sinks: dict[int, LogSink] = {}
        self._tokens = itertools.count()
        self._kept: list[ServerLog] = []

    def feed(self, log: ServerLog) -> None:
        with self._lock:
            sinks = list(self._sinks.values())
            if not sinks:
                self._kept = [*self._kept, log][-KEPT_LOGS:]
        for sink in sinks:
            sink(log)

    @contextmanager
    def listening(self, sink: LogSink | None) -> Iterator[None]:
        if sink is None:
            yield
            return
        with self._lock:
            token = next(self._tokens)
            self._sinks[token] = sink
            kept, self._kept = self._kept, []
        for log in kept:
            sink(log)
        try:
            yield
        finally:
            with self._lock:
                self._sinks.pop(token, None)


@dataclass
class _Server:
    """One declared server: the sync side's view of its lifetime task."""

    name: str
    spec: McpServerSpec
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ready: Future[tuple[ToolSpec, ...]] = field(default_factory=Future)
    finished: threading.Event = field(default_factory=threading.Event)
    session: ClientSession | None = None
    crashed: bool = False  # its connection closed under a call: the next call starts it again
    logs: ServerLogs = field(default_factory=ServerLogs)

    @property
    def label(self) -> str:
        return f"MCP server '{self.name}' ({self.spec.label})"

    @property
    def startup_timeout(self) -> float:
        return self.spec.timeout.total_seconds()


class McpHub:
    """The declared MCP servers, each started on first use and stopped by `close()`."""

    def __init__(self, servers: Mapping[str, McpServerSpec], root: Path, *,
                 env: Mapping[str, str] | None = None, governance: Governance | None = None) -> None:
        self._specs = dict(servers)
        self._root = root
        self._governance = governance or Governance.for_state_dir()
        self._env = dict(os.environ if env is None else env)  # orchestr's own, for `env_from`
        self._servers: dict[str, _Server] = {}
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def tools(self, server: str, *, stop: Stop = NEVER, log: LogSink | None = None) -> list[ToolSpec]:
        """The server's tools as `server.tool`, listed once. Raises McpError if it cannot start,
        Interrupted if the step's deadline or cancel comes first (the server goes on starting)."""
        entry = self._server(server)
        try:
            with entry.logs.listening(log):
                listed = wait_future(entry.ready, stop, limit=entry.startup_timeout + SHUTDOWN_GRACE_SECONDS)
            return list(listed)
        except WaitExpired:
            raise McpError(f"{entry.label} failed to start: no answer within "
                           f"{entry.startup_timeout:g}s") from None

    def call(self, qualified_name: str, args: Mapping[str, object], *, timeout: float,
             stop: Stop = NEVER, log: LogSink | None = None) -> ToolResult:
        """The tool's result. On Interrupted the call's task is cancelled: the SDK stops waiting for
        the answer and the session stays usable; `close()` stops the server, busy or not."""
        server, _, tool = qualified_name.partition(".")
        try:
            self.tools(server, stop=stop, log=log)
        except McpError as exc:
            return ToolResult("error", str(exc))
        entry = self._server(server)
        future = self._submit(_call_tool(entry, tool, dict(args), timeout))
        try:
            with entry.logs.listening(log):
                return wait_future(future, stop, limit=timeout + SHUTDOWN_GRACE_SECONDS)
        except WaitExpired:
            future.cancel()
            return ToolResult("error", f"timed out after {timeout:g}s")
        except Interrupted:
            future.cancel()
            raise

    def close(self) -> None:
        """Stop every started server and the loop thread; a no-op when nothing was started."""
        with self._lock:
            loop, thread, servers = self._loop, self._thread, list(self._servers.values())
            self._loop, self._thread, self._servers = None, None, {}
        if loop is None or thread is None:
            return
        for entry in servers:
            loop.call_soon_threadsafe(entry.stop.set)
        for entry in servers:
            entry.finished.wait(entry.startup_timeout + SHUTDOWN_GRACE_SECONDS)
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()

    # --- the loop thread ----------------------------------------------------------------------

    def _server(self, name: str) -> _Server:
        with self._lock:
            entry = self._servers.get(name)
            if entry is not None and not entry.crashed:
                return entry
            if entry is not None and self._loop is not None:  # it crashed: let its task end, start anew
                self._loop.call_soon_threadsafe(entry.stop.set)
            spec = self._specs.get(name)
            if spec is None:
                declared = ", ".join(sorted(self._specs)) or "none"
                raise McpError(f"unknown MCP server '{name}' (declared under mcp_servers in "
                               f"orchestr.yaml: {declared})")
            entry = _Server(name, spec)
            self._servers[name] = entry
            try:
                opener = _opener(entry, self._root, self._env, self._governance)
            except McpError as exc:
                entry.ready.set_exception(exc)
                entry.finished.set()
                return entry
            self._submit_locked(_serve(entry, opener))
            return entry

    def _submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        with self._lock:
            return self._submit_locked(coro)

    def _submit_locked(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=loop.run_forever, name="orchestr-mcp", daemon=True)
            self._thread.start()
            self._loop = loop
        return asyncio.run_coroutine_threadsafe(coro, self._loop)


# --- one server's lifetime --------------------------------------------------------------------


async def _serve(entry: _Server, opener: Opener) -> None:
    """Start the server, list its tools, then hold its session open until told to stop."""
    # The server's stderr goes to a file, not the terminal: its tail explains a failed start.
    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as stderr:
        try:
            async with opener(stderr) as (read, write), \
                    ClientSession(read, write, client_info=CLIENT, logging_callback=_log_receiver(entry),
                                  log_level=SHOWN_LOG_LEVEL) as session:
                with anyio.fail_after(entry.startup_timeout):
                    await session.initialize()
                    await _ask_for_logs(session)
                    tools = await _list_tools(session, entry.name)
                entry.session = session
                entry.ready.set_result(tools)
                await entry.stop.wait()
        except Exception as exc:  # whatever stops a server fails the steps using it, with the cause
            if not entry.ready.done():
                entry.ready.set_exception(_start_failure(entry, exc, stderr))
        finally:
            entry.session = None
            entry.finished.set()


def _log_receiver(entry: _Server) -> LoggingFnT:
    shown = LOG_LEVELS.index(SHOWN_LOG_LEVEL)

    async def receive(params: mcp_types.LoggingMessageNotificationParams) -> None:
        level = str(params.level)
        if level in LOG_LEVELS and LOG_LEVELS.index(level) < shown:
            return
        data = params.data
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, default=str)
        entry.logs.feed(ServerLog(entry.name, level, params.logger, text[:MAX_LOG_CHARS]))

    return receive


async def _ask_for_logs(session: ClientSession) -> None:
    """A server from before per-request log levels sends logs once asked (logging/setLevel)."""
    capabilities = session.server_capabilities
    if session.initialize_result is None or capabilities is None or capabilities.logging is None:
        return
    with contextlib.suppress(MCPError):
        await session.set_logging_level(SHOWN_LOG_LEVEL)


def _opener(entry: _Server, root: Path, environ: Mapping[str, str], governance: Governance) -> Opener:
    """How to connect: Streamable HTTP for `url:`, else stdio, sandboxed when the reach is bounded."""
    spec = entry.spec
    if spec.url is not None:
        headers = {key: expand_header(value, environ) for key, value in spec.headers.items()}
        url = spec.url
        return lambda _stderr: _remote(url, headers)
    argv = [_resolve_command(spec.command or "", root), *spec.args]
    reach = server_reach(entry.name, spec)
    if reach.bounded and not spec.unsafe_no_sandbox:
        argv = _sandboxed(entry, argv, root=root, environ=environ, governance=governance)
    parameters = StdioServerParameters(command=argv[0], args=argv[1:], env=server_env(spec, environ) or None,
                                       cwd=root)
    return lambda stderr: stdio_client(parameters, errlog=stderr)


def _sandboxed(entry: _Server, argv: list[str], *, root: Path, environ: Mapping[str, str],
               governance: Governance) -> list[str]:
    reach = server_reach(entry.name, entry.spec)
    found = shutil.which(argv[0], path=environ.get("PATH"))
    if found is None:  # inside the sandbox the error would only be "it closed the connection"
        raise McpError(f"{entry.label} failed to start: command not found: {entry.spec.command}")
    sandbox = find_sandbox(environ)
    if isinstance(sandbox, str):
        raise McpError(f"{entry.label} was not started: its reach ({reach.text()}) is narrower than "
                       f"everything, so it runs only in a sandbox, and {sandbox}; install bubblewrap, or set "
                       f"mcp_servers.{entry.name}.unsafe_no_sandbox: true in orchestr.yaml to run it unconfined")
    try:
        return sandboxed_argv(sandbox, [found, *argv[1:]], root=root, reach=reach, governance=governance)
    except SandboxRefused as exc:
        raise McpError(f"{entry.label} was not started: {exc}") from None


@asynccontextmanager
async def _remote(url: str, headers: dict[str, str]) -> AsyncIterator[Streams]:
    """A Streamable HTTP session's streams, with orchestr's client (and its headers) closed after."""
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client

    async with create_mcp_http_client(headers=headers) as client, \
            streamable_http_client(url, http_client=client) as streams:
        yield streams[0], streams[1]


def server_env(spec: McpServerSpec, environ: Mapping[str, str]) -> dict[str, str]:
    """What the server gets on top of the SDK's minimal environment: `env_from` names taken from
    orchestr's environment (a run checks up front that they are set), then the literal `env`."""
    passed = {name: environ[name] for name in spec.env_from if name in environ}
    return {**passed, **spec.env}


def _resolve_command(command: str, root: Path) -> str:
    """A bare name is looked up on PATH; a relative path is relative to the project root."""
    path = Path(command).expanduser()
    if path.is_absolute():
        return str(path)
    return str(root / path) if "/" in command or os.sep in command else command


async def _list_tools(session: ClientSession, server: str) -> tuple[ToolSpec, ...]:
    specs: list[ToolSpec] = []
    cursor: str | None = None
    for _ in range(MAX_TOOL_PAGES):
        params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        # A tool that runs only as a task (a capability orchestr does not take up) is not offered.
        specs += [ToolSpec(f"{server}.{tool.name}", tool.description or "", dict(tool.input_schema))
                  for tool in page.tools if not (tool.execution and tool.execution.task_support == "required")]
        cursor = page.next_cursor
        if cursor is None:
            break
    return tuple(specs)


def _start_failure(entry: _Server, exc: BaseException, stderr: IO[str]) -> McpError:
    message = f"{entry.label} failed to start: {_cause(entry, _leaf(exc))}"
    tail = _stderr_tail(stderr)
    if tail:
        message += f"; its stderr ends with: {tail}"
    error = McpError(message)
    error.__cause__ = exc
    return error


def _leaf(exc: BaseException) -> BaseException:
    """The first real exception inside task groups' exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _cause(entry: _Server, exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return f"command not found: {exc.filename or entry.spec.command}"
    if isinstance(exc, PermissionError):
        return f"cannot run {exc.filename or entry.spec.command}: permission denied"
    if isinstance(exc, TimeoutError):
        return f"no answer within {entry.startup_timeout:g}s"
    if isinstance(exc, MCPError) and exc.code == mcp_types.CONNECTION_CLOSED:
        return "it closed the connection before answering (did it exit?)"
    if isinstance(exc, MCPError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"


def _stderr_tail(stderr: IO[str]) -> str:
    """The last lines the server wrote to stderr, read without moving the shared file offset."""
    fd = stderr.fileno()
    size = os.fstat(fd).st_size
    data = os.pread(fd, STDERR_TAIL_BYTES, max(0, size - STDERR_TAIL_BYTES))
    lines = [line.strip() for line in data.decode("utf-8", errors="replace").splitlines() if line.strip()]
    return " | ".join(lines[-5:])


# --- one call ---------------------------------------------------------------------------------


async def _call_tool(entry: _Server, tool: str, args: dict[str, object], timeout: float) -> ToolResult:
    session = entry.session
    if session is None:
        return ToolResult("error", f"{entry.label} is not running")
    try:
        result = await session.call_tool(tool, args, read_timeout_seconds=timeout)
    except MCPError as exc:
        if exc.code == mcp_types.REQUEST_TIMEOUT:
            return ToolResult("error", f"timed out after {timeout:g}s")
        if exc.code == mcp_types.CONNECTION_CLOSED:
            entry.crashed = True
            return ToolResult("error", f"{entry.label} crashed during the call: it closed the connection "
                                       "(it is started again for the next call)")
        return ToolResult("error", f"{entry.label}: {exc.message}")
    except (RuntimeError, ValidationError, OSError, anyio.ClosedResourceError, anyio.BrokenResourceError) as exc:
        # A malformed or schema-violating answer, or a transport gone from under the session.
        return ToolResult("error", f"{entry.label}: {type(exc).__name__}: {exc}")
    return _tool_result(result)


def _tool_result(result: mcp_types.CallToolResult) -> ToolResult:
    texts = [_block_text(block) for block in result.content]
    images = _images(result.content)
    # Structured content only speaks when nothing else does: it mirrors the blocks (a 120 KB image
    # mirrored there would reach the model as 160,000 characters of base64), and long base64-looking
    # strings inside it are shown by size.
    if not result.content and result.structured_content is not None:
        texts.insert(0, json.dumps(_without_blobs(result.structured_content), ensure_ascii=False, sort_keys=True))
    text = _truncate("\n".join(t for t in texts if t))
    if result.is_error:
        return ToolResult("error", text or "the tool reported an error without a message", images)
    return ToolResult("ok", text or "(no content)", images)


def _images(blocks: list[mcp_types.ContentBlock]) -> tuple[Image, ...]:
    """The image blocks a model can be shown: a type Anthropic takes, at most 5 MB each, at most 8.
    The text names every image either way (`[image/png, 1234 bytes]`)."""
    found = [Image(block.mime_type, "".join(block.data.split())) for block in blocks
             if isinstance(block, mcp_types.ImageContent) and block.mime_type in IMAGE_TYPES
             and _decoded_size(block.data) <= MAX_IMAGE_BYTES]
    return tuple(found[:MAX_IMAGES])


def _block_text(block: mcp_types.ContentBlock) -> str:
    if isinstance(block, mcp_types.TextContent):
        return block.text
    if isinstance(block, mcp_types.ImageContent | mcp_types.AudioContent):
        return f"[{block.mime_type}, {_decoded_size(block.data)} bytes]"
    if isinstance(block, mcp_types.ResourceLink):
        return f"[resource link {block.uri}]"
    resource = block.resource
    if isinstance(resource, mcp_types.TextResourceContents):
        return resource.text
    return f"[resource {resource.uri}, {resource.mime_type or 'binary'}, {_decoded_size(resource.blob)} bytes]"


BLOB = re.compile(r"[A-Za-z0-9+/=\s]{1024,}")


def _without_blobs(value: object) -> object:
    if isinstance(value, str) and BLOB.fullmatch(value):
        return f"[{_decoded_size(value)} bytes of base64]"
    if isinstance(value, dict):
        return {k: _without_blobs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_blobs(v) for v in value]
    return value


def _decoded_size(data: str) -> int:
    """The size of base64 data once decoded, without decoding it."""
    data = "".join(data.split())
    return len(data) * 3 // 4 - data[-2:].count("=")


def _truncate(text: str) -> str:
    if len(text) <= MAX_RESULT_CHARS:
        return text
    return text[:MAX_RESULT_CHARS] + f"\n[... {len(text) - MAX_RESULT_CHARS} more characters]"
