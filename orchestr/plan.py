"""The frozen Plan: what `run` executes and `plan` shows. Built only by the compiler."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal, NewType

from orchestr.context import ResolvedContext
from orchestr.models import AgentSpec, AgentStep, Budget, Retry, ShellStep, WorkflowSpec
from orchestr.permissions import EffectivePermissions
from orchestr.reach import ServerReach

StepId = NewType("StepId", str)
StepKind = Literal["shell", "agent"]


@dataclass(frozen=True)
class ResolvedAgent:
    name: str
    spec: AgentSpec
    model: str  # provider:model
    tools: tuple[str, ...]
    max_turns: int
    budget: Budget | None


@dataclass(frozen=True)
class PlannedStep:
    id: StepId
    spec: ShellStep | AgentStep
    needs: tuple[StepId, ...]
    upstream: frozenset[StepId]
    layer: int
    retry: Retry
    timeout: timedelta | None
    context: ResolvedContext | None
    permissions: EffectivePermissions | None
    agent: ResolvedAgent | None = None
    servers: tuple[ServerReach, ...] = ()  # the MCP servers whose tools the agent has, with their reach

    @property
    def kind(self) -> StepKind:
        return "agent" if isinstance(self.spec, AgentStep) else "shell"


@dataclass(frozen=True)
class Plan:
    workflow: str
    path: Path
    display: str
    root: Path
    spec: WorkflowSpec
    steps: Mapping[StepId, PlannedStep]  # in topological order
    layers: tuple[tuple[StepId, ...], ...]
    secrets: tuple[str, ...] = field(default=())

    def dependents(self, step: StepId) -> list[StepId]:
        return [s.id for s in self.steps.values() if step in s.needs]

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(sorted({s.agent.model for s in self.steps.values() if s.agent is not None}))
