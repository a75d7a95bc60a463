"""Compiler passes that keep tools governed: no write into governance paths, no server beyond reach.

Both are checked again at run time (the built-in tools refuse governance paths; `Toolbox.call`
denies a server whose reach the step's permissions do not cover, e.g. one granted by `--allow`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from orchestr.errors import Diagnostic
from orchestr.governance import Governance, check_write_globs
from orchestr.models import AgentStep, Permissions
from orchestr.permissions import EffectivePermissions
from orchestr.plan import StepId
from orchestr.reach import coverage_message, reach_gaps, server_reach
from orchestr.source import PathKey

if TYPE_CHECKING:
    from orchestr.compiler import Unit
    from orchestr.context import ResolvedContext


def governance_writes(unit: Unit) -> Iterator[Diagnostic]:
    """A step's or agent's `write:` glob must not cover orchestr.yaml, contexts/, workflows/..."""
    governance = Governance.for_state_dir(unit.config.state_dir)
    sources: list[tuple[PathKey, Permissions | None]] = [
        (("agents", name, "permissions"), agent.permissions) for name, agent in unit.wf.spec.agents.items()]
    sources += [(("steps", i, "permissions"), step.permissions)
                for i, step in enumerate(unit.steps) if isinstance(step, AgentStep)]
    for at, permissions in sources:
        if permissions is None or permissions.write is None:
            continue
        for j, hint in check_write_globs(permissions.write, governance):
            yield Diagnostic(unit.span((*at, "write", j)),
                             f"permissions.write lists '{permissions.write[j]}', which covers a governance path",
                             hint=hint)


def servers_used(tools: tuple[str, ...], declared: set[str]) -> list[str]:
    """The MCP servers whose tools these tool names or globs can reach."""
    return list(dict.fromkeys(t.partition(".")[0] for t in tools if "." in t and t.partition(".")[0] in declared))


def server_reach_covered(unit: Unit, contexts: dict[StepId, ResolvedContext | None],
                         permissions_of: Callable[[AgentStep, ResolvedContext | None], EffectivePermissions],
                         ) -> Iterator[Diagnostic]:
    """Every server an agent step may use must lie within the step's effective permissions."""
    declared = set(unit.config.mcp_servers)
    for i, step in enumerate(unit.steps):
        agent = unit.wf.spec.agents.get(step.agent) if isinstance(step, AgentStep) else None
        if agent is None or not isinstance(step, AgentStep):
            continue
        permissions = permissions_of(step, contexts.get(StepId(step.id)))
        for server in servers_used(agent.tools, declared):
            reach = server_reach(server, unit.config.mcp_servers[server])
            gaps = reach_gaps(permissions, reach)
            if gaps:
                yield Diagnostic(
                    unit.span(("steps", i, "agent")),
                    f"step '{step.id}' may use MCP server '{server}' (agent '{step.agent}' has its tools), "
                    f"but {coverage_message(reach, gaps)}",
                    hint=f"allow what is missing in the step's context chain, narrow mcp_servers.{server}.reach "
                    "in orchestr.yaml, or take the server's tools from the agent (a `write` reach counts by "
                    "folder, as the sandbox binds it)")
