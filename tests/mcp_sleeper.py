"""A stdio MCP server for interruption tests: `sleep` blocks for as long as it is told; `crash`
dies mid-call; `whoami` answers the server's pid.

    python tests/mcp_sleeper.py PIDFILE     # writes its pid to PIDFILE, then serves

The tool sleeps in the server's own thread (time.sleep), as a slow real tool would: the server
cannot answer anything meanwhile, so only the client giving up and stopping it ends the call early.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from mcp.server.mcpserver import MCPServer

server = MCPServer("sleeper")


@server.tool()
def sleep(seconds: float) -> str:
    """Sleep for `seconds`, then say so."""
    time.sleep(seconds)
    return f"slept {seconds:g}s"


@server.tool()
def crash() -> str:
    """Die mid-call, as a server with a bug would."""
    os._exit(3)


@server.tool()
def whoami() -> str:
    """This server process's pid (a restarted server answers with a new one)."""
    return str(os.getpid())


if __name__ == "__main__":
    Path(sys.argv[1]).write_text(str(os.getpid()))
    server.run()
