"""What each step is effectively told and allowed, as plain, comparable values.

An agent step's effective prompt is the text it works from, in the order the model receives it:
the context chain exactly as `orchestr context show` prints it, the agent's instructions, the
files the step attaches, the step's prompt template (expressions are shown as written: their
values exist only at run time) and the output schema. Its effective permissions are, per key,
what every level of the chain, the agent and the step allow together; unset keys are spelled out
(`[]` for nothing, `["**"]` for anything inside the project).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from orchestr.context import MAX_FILE_BYTES, ResolvedContext, render_context
from orchestr.expressions import ExpressionError, find, references
from orchestr.models import (
    AgentStep,
    ApprovalStep,
    McpServerSpec,
    ProjectConfig,
    ShellStep,
    format_duration,
)
from orchestr.permissions import (
    DENY_WHEN_UNSET,
    KEYS,
    REACH_OUTSIDE,
    EffectivePermissions,
    subsumes,
)
from orchestr.plan import Plan, PlannedStep, StepKind

ANYWHERE = "**"
Patterns = tuple[str, ...]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogateescape")).hexdigest()


def canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(frozen=True)
class ServerUse:
    """An MCP server a step can call, with what is known of it."""

    name: str
    config_sha256: str

    def to_json(self) -> dict[str, object]:
        # mcp_servers.NAME.reach goes here as one more key once servers declare it
        return {"config_sha256": self.config_sha256}


@dataclass(frozen=True)
class EffectiveStep:
    workflow: str
    step: str
    kind: StepKind
    context: str | None
    chain: tuple[str, ...]
    prompt: str  # agent steps; "" for shell steps
    model: str | None
    tools: Patterns
    permissions: Mapping[str, Patterns]
    servers: tuple[ServerUse, ...]
    verify: tuple[str, ...]  # one canonical JSON line per check
    command: str = ""  # shell steps: the command, its env and the context vars it reads
    # per key, each level's patterns: an action must match one pattern of every level
    constraints: Mapping[str, tuple[Patterns, ...]] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.workflow}/{self.step}"

    def aspects(self) -> dict[str, object]:
        """What `impact` compares; equal aspects mean nothing effective changed."""
        return {
            "context": self.context, "prompt": self.prompt, "model": self.model, "tools": list(self.tools),
            "permissions": {k: list(v) for k, v in self.permissions.items()},
            "servers": {s.name: s.to_json() for s in self.servers}, "verify": list(self.verify),
            "command": self.command,
        }


def effective_steps(plan: Plan, config: ProjectConfig) -> Iterator[EffectiveStep]:
    rendered: dict[str, str] = {}
    for step in plan.steps.values():
        if isinstance(step.spec, AgentStep):
            yield _agent_step(plan, step, step.spec, config, rendered)
        elif isinstance(step.spec, ApprovalStep):
            yield _approval_step(plan, step, step.spec)
        else:
            yield _shell_step(plan, step, step.spec)


def _agent_step(plan: Plan, step: PlannedStep, spec: AgentStep, config: ProjectConfig,
                rendered: dict[str, str]) -> EffectiveStep:
    agent = step.agent
    assert agent is not None and step.permissions is not None
    permissions = step.permissions
    tools = tuple(t for t in agent.tools if permissions.check_tool(t).allowed)
    return EffectiveStep(
        workflow=plan.workflow, step=step.id, kind="agent",
        context=step.context.id if step.context else None, chain=_chain(step.context),
        prompt=prompt_text(step, spec, plan.root, rendered), model=agent.model, tools=tools,
        permissions={key: narrowed(permissions, key) for key in KEYS},
        servers=servers_used(tools, config.mcp_servers), verify=_checks(step),
        constraints={key: constraints(permissions, key) for key in KEYS},
    )


def _shell_step(plan: Plan, step: PlannedStep, spec: ShellStep) -> EffectiveStep:
    return EffectiveStep(
        workflow=plan.workflow, step=step.id, kind="shell",
        context=step.context.id if step.context else None, chain=_chain(step.context),
        prompt="", model=None, tools=(), permissions={}, servers=(), verify=_checks(step),
        command=shell_text(spec, step.context),
    )


def _approval_step(plan: Plan, step: PlannedStep, spec: ApprovalStep) -> EffectiveStep:
    """What a person is asked and shown (its `command` aspect, for `impact`)."""
    approval = spec.approval
    lines = [f"approval: {approval.message.strip()}", *(f"show: {name}" for name in approval.show),
             f"timeout: {format_duration(approval.timeout)}", *([f"notify: {approval.notify}"] if approval.notify else [])]
    return EffectiveStep(
        workflow=plan.workflow, step=step.id, kind="approval",
        context=step.context.id if step.context else None, chain=_chain(step.context),
        prompt="", model=None, tools=(), permissions={}, servers=(), verify=_checks(step),
        command="\n".join(lines) + "\n",
    )


def _chain(context: ResolvedContext | None) -> tuple[str, ...]:
    return tuple(node.id for node in context.chain) if context else ()


def _checks(step: PlannedStep) -> tuple[str, ...]:
    return tuple(canonical(check.model_dump(mode="json", by_alias=True, exclude_defaults=True))
                 for check in step.spec.verify)


# --- the prompt -------------------------------------------------------------------------------


def prompt_text(step: PlannedStep, spec: AgentStep, root: Path, rendered: dict[str, str]) -> str:
    assert step.agent is not None
    sections = []
    if step.context is not None:
        if step.context.id not in rendered:
            rendered[step.context.id] = render_context(step.context, root)
        sections.append(rendered[step.context.id].rstrip("\n"))
    instructions = step.agent.spec.instructions.strip()
    if instructions:
        sections.append(f"<instructions>\n{instructions}\n</instructions>")
    sections += [_attached(root, name) for name in spec.files]
    sections.append(f"<prompt>\n{spec.prompt.strip()}\n</prompt>")
    if spec.output is not None:
        schema = json.dumps(spec.output.schema_, sort_keys=True, indent=2, ensure_ascii=False)
        sections.append(f"<output_schema>\n{schema}\n</output_schema>")
    return "\n\n".join(sections) + "\n"


def _attached(root: Path, name: str) -> str:
    path = root / name
    if not path.is_file():  # a step with `needs:` may attach what an upstream step writes
        return f'<file path="{name}">\n(written at run time by an upstream step)\n</file>'
    text = path.read_bytes()[:MAX_FILE_BYTES].decode("utf-8", errors="replace")
    return f'<file path="{name}">\n{text.rstrip()}\n</file>'


def shell_text(spec: ShellStep, context: ResolvedContext | None) -> str:
    """A shell step's command, env templates and the values of the context vars it reads."""
    lines = [f"run: {spec.run.strip()}"]
    lines += [f"env {key}: {value}" for key, value in sorted(spec.env.items())]
    if spec.cwd:
        lines.append(f"cwd: {spec.cwd}")
    variables = context.vars if context else {}
    lines += [f"vars.{name}: {variables[name]}" for name in sorted(_vars_read(spec)) if name in variables]
    return "\n".join(lines) + "\n"


def _vars_read(spec: ShellStep) -> set[str]:
    texts = [*spec.env.values(), *([spec.if_] if spec.if_ else [])]
    names: set[str] = set()
    for text in texts:
        for offset, expr in find(text):
            try:
                names.update(ref.path[0] for ref in references(expr, offset=offset) if ref.root == "vars" and ref.path)
            except ExpressionError:
                continue
    return names


# --- permissions and servers ------------------------------------------------------------------


def constraints(permissions: EffectivePermissions, key: str) -> tuple[Patterns, ...]:
    """Each level's patterns for `key`, with the unset rules of orchestr.permissions made explicit."""
    setting = tuple(getattr(level, key) for level in permissions.levels if getattr(level, key) is not None)
    in_context = any(level.is_context for level in permissions.levels)
    context_sets = any(level.is_context and getattr(level, key) is not None for level in permissions.levels)
    if key in REACH_OUTSIDE and in_context and not context_sets:
        return ((),)
    if not setting:
        return ((),) if key in DENY_WHEN_UNSET else ()
    return setting


def narrowed(permissions: EffectivePermissions, key: str) -> Patterns:
    """The patterns every level allows: what an action may match, in one sorted list."""
    levels = constraints(permissions, key)
    if not levels:
        return (ANYWHERE,)
    candidates = sorted({p for patterns in levels for p in patterns})
    return tuple(p for p in candidates if all(subsumes(patterns, p, key) for patterns in levels))


def widened_keys(before: EffectiveStep, after: EffectiveStep) -> tuple[str, ...]:
    """Keys under which `after` may allow something `before` did not (conservative: when unsure, widened)."""
    return tuple(key for key in KEYS
                 if _widens(before.constraints.get(key, ((),)), after.constraints.get(key, ((),)), key))


def _widens(old: tuple[Patterns, ...], new: tuple[Patterns, ...], key: str) -> bool:
    # new allows no more than old when, for every old level, some new level lies within it
    new_levels = new or ((ANYWHERE,),)
    return any(not any(all(subsumes(limit, p, key) for p in level) for level in new_levels) for limit in old)


def servers_used(tools: Patterns, servers: Mapping[str, McpServerSpec]) -> tuple[ServerUse, ...]:
    names = sorted({t.partition(".")[0] for t in tools if "." in t} & set(servers))
    return tuple(ServerUse(name, sha256(canonical(servers[name].model_dump(mode="json", exclude_defaults=True))))
                 for name in names)
