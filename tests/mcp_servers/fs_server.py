"""A filesystem-like MCP server for the governed-tools tests: it does whatever it is asked.

It trusts nothing and checks nothing, like a third-party server might: the sandbox and the
permission gate are what keep it in its reach. Each tool answers `ok ...` or `failed: <error>`.

    python fs_server.py            stdio
    python fs_server.py --http     Streamable HTTP on 127.0.0.1, a free port printed on stdout;
                                   every request's headers are kept for the `header` tool
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from mcp.server.mcpserver import MCPServer

server = MCPServer("fs")
SEEN_HEADERS: dict[str, str] = {}


def _attempt(action: Callable[[], str]) -> str:
    try:
        return "ok " + action()
    except OSError as exc:
        return f"failed: {exc.strerror or exc}"


@server.tool()
def write_file(path: str, content: str) -> str:
    """Write a file (relative to the working directory, or absolute)."""
    return _attempt(lambda: f"{Path(path).write_text(content)} characters")


@server.tool()
def read_file(path: str) -> str:
    """Read a file."""
    return _attempt(lambda: Path(path).read_text())


@server.tool()
def symlink(target: str, link: str) -> str:
    """Make `link` point at `target`."""
    return _attempt(lambda: str(os.symlink(target, link)))


@server.tool()
def connect(host: str, port: int) -> str:
    """Open a TCP connection."""
    def opened() -> str:
        with socket.create_connection((host, port), timeout=5):
            return "connected"
    return _attempt(opened)


@server.tool()
def header(name: str) -> str:
    """A header of the HTTP requests this server received ('-' if none)."""
    return SEEN_HEADERS.get(name.lower(), "-")


Scope = MutableMapping[str, Any]
App = Callable[[Scope, Any, Any], Awaitable[None]]


def _recording(app: App) -> App:
    async def wrapped(scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            SEEN_HEADERS.update({k.decode().lower(): v.decode() for k, v in scope["headers"]})
        await app(scope, receive, send)
    return wrapped


def _serve_http() -> None:
    import anyio
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(_recording(server.streamable_http_app()), log_level="warning")
    anyio.run(uvicorn.Server(config).serve, [sock])


if __name__ == "__main__":
    if "--http" in sys.argv:
        _serve_http()
    else:
        server.run()
