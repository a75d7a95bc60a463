"""The frozen Plan: what `run` executes and `plan` shows. Built only by the compiler."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Literal, NewType

from orchestr.context import ResolvedContext
from orchestr.models import (
    AgentSpec,
    AgentStep,
    ApprovalStep,
    Budget,
    Retry,
    ShellStep,
    WorkflowSpec,
)
from orchestr.permissions import EffectivePermissions
from orchestr.reach import ServerReach

StepId = NewType("StepId", str)
StepKind = Literal["shell", "agent", "approval"]


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
    spec: ShellStep | AgentStep | ApprovalStep
    needs: tuple[StepId, ...]
    layer: int
    retry: Retry
    timeout: timedelta | None
    context: ResolvedContext | None
    permissions: EffectivePermissions | None
    agent: ResolvedAgent | None = None
    servers: tuple[ServerReach, ...] = ()  # the MCP servers whose tools the agent has, with their reach

    @property
    def kind(self) -> StepKind:
        if isinstance(self.spec, AgentStep):
            return "agent"
        return "approval" if isinstance(self.spec, ApprovalStep) else "shell"

    @property
    def condition(self) -> str | None:
        """The `if:` as written, without `${{ }}`."""
        from orchestr.expressions import condition_source

        return condition_source(self.spec.if_) if self.spec.if_ is not None else None

    @property
    def effective_condition(self) -> str:
        """When the step runs: its `if:` with the implicit `success() and` a status-free one gets."""
        from orchestr.expressions import status_calls

        written = self.condition
        if written is None:
            return "success()"
        return written if status_calls(written) else f"success() and ({written})"


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

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(sorted({s.agent.model for s in self.steps.values() if s.agent is not None}))
