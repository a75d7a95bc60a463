"""The compiler pass that keeps agents and steps under their context chain's ceiling.

Permissions only narrow: an entry in an agent's or step's `permissions:` that the chain does not
allow could never take effect (every level must allow an action), so, as for a context child that
lists what no ancestor allows, it is an error rather than a promise a reviewer would misread.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from orchestr.errors import Diagnostic
from orchestr.models import PERMISSION_KEYS, AgentStep, Permissions
from orchestr.permissions import beyond_ceiling
from orchestr.plan import StepId
from orchestr.source import PathKey

if TYPE_CHECKING:
    from orchestr.compiler import Unit
    from orchestr.context import ResolvedContext


def permission_ceiling(unit: Unit, contexts: dict[StepId, ResolvedContext | None]) -> Iterator[Diagnostic]:
    reported: set[PathKey] = set()
    for i, step in enumerate(unit.steps):
        context = contexts.get(StepId(step.id))
        if not isinstance(step, AgentStep) or context is None:
            continue
        agent = unit.wf.spec.agents.get(step.agent)
        sources: list[tuple[PathKey, Permissions | None]] = [(("steps", i, "permissions"), step.permissions)]
        if agent is not None:
            sources.append((("agents", step.agent, "permissions"), agent.permissions))
        for at, permissions in sources:
            for where, why in _entries_beyond(context, at, permissions):
                if where not in reported:
                    reported.add(where)
                    yield Diagnostic(unit.span(where), f"{why}; permissions only narrow below the context",
                                     hint=f"remove it, or allow it in the context chain of '{context.id}' first")


def _entries_beyond(context: ResolvedContext, at: PathKey,
                    permissions: Permissions | None) -> Iterator[tuple[PathKey, str]]:
    if permissions is None:
        return
    ceiling = context.permission_levels()
    for key in PERMISSION_KEYS:
        for j, pattern in enumerate(getattr(permissions, key) or ()):
            why = beyond_ceiling(ceiling, key, pattern)
            if why is not None:
                yield (*at, key, j), f"permissions.{key} lists '{pattern}', beyond context '{context.id}': {why}"
