"""The tools an agent step may call: built-ins and MCP servers' tools, all behind one permission gate."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from orchestr.errors import ConfigurationError
from orchestr.governance import Governance
from orchestr.interruption import NEVER, Stop
from orchestr.models import ProjectConfig
from orchestr.permissions import EffectivePermissions
from orchestr.providers.base import ToolDef
from orchestr.reach import coverage_message, reach_gaps, server_reach
from orchestr.steps.base import Attempt
from orchestr.tools.builtin import (
    BUILTIN_TOOLS,
    ServerLog,
    ToolContext,
    ToolResult,
    ToolSpec,
    call_builtin,
)
from orchestr.tools.sandbox import Sandbox, permission_reach, sandboxed_argv

TOOL_TIMEOUT_SECONDS = 60.0
# What run_command children see: enough to work, none of the parent's secrets.
SAFE_ENV_KEYS = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
LogSink = Callable[[ServerLog], None]  # hears an MCP server's warnings while a step waits on it


class ToolServerError(Exception):
    """A tool server could not be started or asked for its tools; the step fails with this message."""


class ToolServers(Protocol):
    """MCP servers' tools (orchestr.tools.mcp.McpHub). `tools` raises ToolServerError; `call` never
    raises for a server's failure: it returns an error result the model can read. Both raise
    orchestr.interruption.Interrupted when `stop` says so, abandoning the call in flight. `log` hears
    the server's log notifications (warning and above) while the caller waits on it."""

    def tools(self, server: str, *, stop: Stop = NEVER, log: LogSink | None = None) -> list[ToolSpec]: ...

    def call(self, qualified_name: str, args: Mapping[str, object], *, timeout: float,
             stop: Stop = NEVER, log: LogSink | None = None) -> ToolResult: ...

    def close(self) -> None: ...


def check_server_env(config: ProjectConfig, tools: Iterable[str], env: Mapping[str, str]) -> None:
    """Every `env_from` variable of the MCP servers these tools come from must be set.

    Checked before anything runs (exit 2, like a provider's key), not left to the server: a server
    started without its token fails deep inside a step, after earlier steps ran, often with an
    authentication error the model reads rather than a message naming the variable. An empty value
    counts as unset: it is what an unresolved CI secret gives.
    """
    servers = sorted({t.partition(".")[0] for t in tools if "." in t} & set(config.mcp_servers))
    problems = [f"{name} is not set: MCP server '{server}' (orchestr.yaml env_from) needs it"
                for server in servers for name in config.mcp_servers[server].env_from if not env.get(name)]
    if problems:
        raise ConfigurationError("; ".join(problems) + " (export it before running)")


class Toolbox:
    def __init__(self, config: ProjectConfig, root: Path, *, env: Mapping[str, str] | None = None,
                 command_sandbox: Sandbox | None = None) -> None:
        self.config = config
        self.command_sandbox = command_sandbox
        self.root = root
        self.env = dict(os.environ if env is None else env)
        self.governance = Governance.for_state_dir(config.state_dir)
        self._hub: ToolServers | None = None
        self._lock = threading.Lock()

    def _mcp(self) -> ToolServers:
        with self._lock:
            if self._hub is None:
                from orchestr.tools.mcp import McpHub

                self._hub = McpHub(self.config.mcp_servers, self.root, env=self.env, governance=self.governance)
            return self._hub

    def definitions(self, names: Sequence[str], permissions: EffectivePermissions, *,
                    stop: Stop = NEVER, log: LogSink | None = None) -> tuple[ToolDef, ...]:
        """What the model is offered: the tools it was given that its permissions allow."""
        defs: list[ToolDef] = []
        for name in dict.fromkeys(names):
            if name in BUILTIN_TOOLS:
                spec = BUILTIN_TOOLS[name]
                if permissions.check_tool(name).allowed:
                    defs.append(ToolDef(spec.name, spec.description, dict(spec.input_schema)))
            elif "." in name and self.beyond_reach(name.partition(".")[0], permissions) is None:
                for spec in self._mcp().tools(name.partition(".")[0], stop=stop, log=log):
                    if _matches(name, spec.name) and permissions.check_tool(spec.name).allowed:
                        defs.append(ToolDef(spec.name, spec.description, dict(spec.input_schema)))
        return tuple(defs)

    def call(self, name: str, args: Mapping[str, object], permissions: EffectivePermissions,
             attempt: Attempt, *, stop: Stop = NEVER, log: LogSink | None = None) -> ToolResult:
        """The tool's result; Interrupted when the step's deadline or cancel cuts it."""
        if name in BUILTIN_TOOLS:
            env = {k: v for k, v in os.environ.items() if k in SAFE_ENV_KEYS}
            ctx = ToolContext(root=self.root, permissions=permissions, timeout=TOOL_TIMEOUT_SECONDS, env=env,
                              stop=stop, processes=attempt.processes,
                              governance=self.governance, sandbox=self._command_wrapper(permissions))
            return call_builtin(name, args, ctx)
        decision = permissions.check_tool(name)
        if not decision.allowed:
            return ToolResult("denied", f"denied: {decision.reason}")
        if "." not in name or name.partition(".")[0] not in self.config.mcp_servers:
            return ToolResult("error", f"unknown tool {name!r}")
        beyond = self.beyond_reach(name.partition(".")[0], permissions)
        if beyond is not None:
            return ToolResult("denied", f"denied: {beyond}")
        # The call's own limit stays whole: the step's deadline ends it through `stop`, as a timeout
        # of the step rather than an error the model would read.
        timeout = self.config.mcp_servers[name.partition(".")[0]].call_timeout.total_seconds()
        return self._mcp().call(name, args, timeout=timeout, stop=stop, log=log)

    def _command_wrapper(self, permissions: EffectivePermissions) -> Callable[[list[str]], list[str]] | None:
        sandbox = self.command_sandbox
        if sandbox is None:
            return None
        reach = permission_reach(permissions)
        return lambda argv: sandboxed_argv(sandbox, argv, root=self.root, reach=reach, governance=self.governance)

    def beyond_reach(self, server: str, permissions: EffectivePermissions) -> str | None:
        """Why the server's reach is more than these permissions allow, or None when they cover it."""
        spec = self.config.mcp_servers.get(server)
        if spec is None:
            return None
        reach = server_reach(server, spec)
        gaps = reach_gaps(permissions, reach)
        return coverage_message(reach, gaps) if gaps else None

    def close(self) -> None:
        if self._hub is not None:
            self._hub.close()


def _matches(pattern: str, name: str) -> bool:
    from orchestr.permissions import glob_match

    return bool(glob_match(pattern, name))
