"""Workflow + context tree + config -> a frozen Plan, as small passes that collect every error."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from orchestr.ceiling import permission_ceiling
from orchestr.context import ContextTree, ResolvedContext, permission_level
from orchestr.errors import Diagnostic, Span, ValidationFailed, did_you_mean
from orchestr.expressions import (
    ROOTS,
    STATUS_FUNCTIONS,
    ExpressionError,
    Ref,
    analyze,
    condition_source,
    find,
)
from orchestr.governed_passes import governance_writes, server_reach_covered, servers_used
from orchestr.graph import Ancestry, kahn_layers
from orchestr.models import (
    AgentStep,
    ApprovalStep,
    ExprCheck,
    ProjectConfig,
    Retry,
    ShellStep,
    Step,
)
from orchestr.permissions import EffectivePermissions, PermissionLevel
from orchestr.plan import Plan, PlannedStep, ResolvedAgent, StepId
from orchestr.project import LoadedWorkflow
from orchestr.reach import ServerReach, server_reach
from orchestr.source import PathKey
from orchestr.step_passes import approval_steps, attached_files, impossible_checks, scheduled_inputs

BUILTIN_TOOLS = ("read_file", "write_file", "list_files", "run_command", "http_request")
BUILTIN_PROVIDERS = ("anthropic", "openai")
STEP_FIELDS = ("outputs", "output", "status")


@dataclass(frozen=True)
class Unit:
    """What every pass reads."""

    wf: LoadedWorkflow
    tree: ContextTree
    config: ProjectConfig

    def span(self, at: PathKey) -> Span:
        return self.wf.doc.span(at)

    @property
    def steps(self) -> tuple[Step, ...]:
        return self.wf.spec.steps


def compile_workflow(wf: LoadedWorkflow, tree: ContextTree, config: ProjectConfig) -> Plan:
    """Compile or raise ValidationFailed with every problem found."""
    unit = Unit(wf, tree, config)
    problems = [*_duplicate_ids(unit), *_unknown_needs(unit), *_schedule(unit)]
    order, cycle_problems = _topological(unit)
    problems += cycle_problems
    upstream = _upstream(unit, order) if not cycle_problems else Ancestry([], {})
    contexts = _contexts(unit, problems)
    problems += _agents(unit, contexts)
    problems += permission_ceiling(unit, contexts)
    problems += governance_writes(unit)
    problems += server_reach_covered(unit, contexts, lambda step, context: _permissions(unit, step, context))
    problems += _expressions(unit, upstream, contexts)
    problems += [*_shell_source(unit), *attached_files(unit), *impossible_checks(unit), *approval_steps(unit)]
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ValidationFailed(problems)
    return _build(unit, order, contexts)


# --- structure --------------------------------------------------------------------------------


def _duplicate_ids(unit: Unit) -> Iterator[Diagnostic]:
    seen: dict[str, int] = {}
    for i, step in enumerate(unit.steps):
        if step.id in seen:
            first = unit.span(("steps", seen[step.id], "id"))
            yield Diagnostic(
                unit.span(("steps", i, "id")),
                f"duplicate step id '{step.id}' (first used at line {first.line})",
                hint="step ids must be unique within a workflow",
            )
        else:
            seen[step.id] = i


def _unknown_needs(unit: Unit) -> Iterator[Diagnostic]:
    ids = {s.id for s in unit.steps}
    for i, step in enumerate(unit.steps):
        for j, need in enumerate(step.needs):
            if need == step.id:
                yield Diagnostic(unit.span(("steps", i, "needs", j)), f"step '{step.id}' needs itself",
                                 hint=f"remove '{need}' from its `needs:`")
            elif need not in ids:
                suggestion = did_you_mean(need, ids)
                yield Diagnostic(
                    unit.span(("steps", i, "needs", j)),
                    f"step '{step.id}' needs unknown step '{need}'" + (f"; {suggestion}" if suggestion else ""),
                    hint=f"steps in this workflow: {', '.join(s.id for s in unit.steps)}",
                )


def _topological(unit: Unit) -> tuple[list[StepId], list[Diagnostic]]:
    """Kahn's algorithm with in-degree counts, round by round in file order; on a cycle, report it."""
    ids = {s.id for s in unit.steps}
    needs = {StepId(s.id): [StepId(n) for n in s.needs if n in ids and n != s.id] for s in unit.steps}
    layers, stuck = kahn_layers(needs)
    order = [step for layer in layers for step in layer]
    if stuck:
        return order, [_cycle(unit, needs, set(order))]
    return order, []


def _cycle(unit: Unit, needs: dict[StepId, list[StepId]], done: set[StepId]) -> Diagnostic:
    start = next(s for s in needs if s not in done)
    path = [start]
    while True:
        nxt = next(n for n in needs[path[-1]] if n not in done)
        if nxt in path:
            cycle = [*path[path.index(nxt) :], nxt]
            break
        path.append(nxt)
    first = cycle[0]
    index = next(i for i, s in enumerate(unit.steps) if s.id == first)
    return Diagnostic(
        unit.span(("steps", index, "needs")),
        f"dependency cycle: {' -> '.join(cycle)}",
        hint="remove one of these `needs` so the steps can run in some order",
    )


def _upstream(unit: Unit, order: list[StepId]) -> Ancestry:
    return Ancestry(order, {StepId(s.id): [StepId(n) for n in s.needs] for s in unit.steps})


def _schedule(unit: Unit) -> Iterator[Diagnostic]:
    schedule = unit.wf.spec.schedule
    if schedule is None:
        return
    from orchestr.scheduling.slots import validate_cron, validate_timezone

    cron_problem = validate_cron(schedule.cron)
    if cron_problem:
        yield Diagnostic(unit.span(("schedule", "cron")), f"invalid cron '{schedule.cron}': {cron_problem}",
                         hint="5 fields (minute hour day month weekday) or @hourly/@daily/@weekly/@monthly")
    zone_problem = validate_timezone(schedule.timezone)
    if zone_problem:
        from zoneinfo import available_timezones

        suggestion = did_you_mean(schedule.timezone, available_timezones())
        yield Diagnostic(unit.span(("schedule", "timezone")), zone_problem + (f"; {suggestion}" if suggestion else ""),
                         hint="use an IANA name such as Europe/Berlin or UTC")
    yield from scheduled_inputs(unit)


# --- contexts, agents, permissions ------------------------------------------------------------


def _step_context_ref(unit: Unit, i: int, step: Step) -> tuple[str | None, PathKey]:
    spec = unit.wf.spec
    if isinstance(step, AgentStep):
        if step.context:
            return step.context, ("steps", i, "context")
        agent = spec.agents.get(step.agent)
        if agent is not None and agent.context:
            return agent.context, ("agents", step.agent, "context")
    return spec.context, ("context",)


def _contexts(unit: Unit, problems: list[Diagnostic]) -> dict[StepId, ResolvedContext | None]:
    resolved: dict[StepId, ResolvedContext | None] = {}
    reported: set[PathKey] = set()
    for i, step in enumerate(unit.steps):
        ref, at = _step_context_ref(unit, i, step)
        resolved[StepId(step.id)] = None
        if ref is None:
            continue
        try:
            resolved[StepId(step.id)] = unit.tree.resolve(ref, span=unit.span(at))
        except ValidationFailed as exc:
            if at not in reported:
                reported.add(at)
                problems.extend(exc.diagnostics)
    return resolved


def _agents(unit: Unit, contexts: dict[StepId, ResolvedContext | None]) -> Iterator[Diagnostic]:
    spec = unit.wf.spec
    for name, agent in spec.agents.items():
        yield from _agent_tools(unit, name, agent.tools)
    for i, step in enumerate(unit.steps):
        if not isinstance(step, AgentStep):
            continue
        found = spec.agents.get(step.agent)
        if found is None:
            suggestion = did_you_mean(step.agent, set(spec.agents))
            yield Diagnostic(
                unit.span(("steps", i, "agent")),
                f"unknown agent '{step.agent}'" + (f"; {suggestion}" if suggestion else ""),
                hint=f"define it under `agents:` (defined: {', '.join(spec.agents) or 'none'})",
            )
            continue
        yield from _model(unit, step.agent)
        context = contexts.get(StepId(step.id))
        if context is not None:
            yield from _tools_within_context(unit, i, step, found.tools, context)


def _agent_tools(unit: Unit, name: str, tools: tuple[str, ...]) -> Iterator[Diagnostic]:
    servers = set(unit.config.mcp_servers)
    for j, tool in enumerate(tools):
        server, dot, _ = tool.partition(".")
        if tool in BUILTIN_TOOLS or (dot and server in servers):
            continue
        known = [*BUILTIN_TOOLS, *(f"{s}.*" for s in sorted(servers))]
        suggestion = did_you_mean(tool, known)
        yield Diagnostic(
            unit.span(("agents", name, "tools", j)),
            f"unknown tool '{tool}'" + (f"; {suggestion}" if suggestion else ""),
            hint=f"built-in tools: {', '.join(BUILTIN_TOOLS)}; MCP tools are server.tool with the server "
            "declared under mcp_servers in orchestr.yaml",
        )


def resolve_model(unit: Unit, agent_name: str) -> str | None:
    agent = unit.wf.spec.agents[agent_name]
    return agent.model or unit.wf.spec.defaults.model or unit.config.defaults.model


def _model(unit: Unit, agent_name: str) -> Iterator[Diagnostic]:
    model = resolve_model(unit, agent_name)
    at: PathKey = ("agents", agent_name)
    if model is None:
        yield Diagnostic(unit.wf.doc.key_span(at), f"agent '{agent_name}' has no model",
                         hint="set agents.NAME.model or defaults.model, e.g. anthropic:claude-sonnet-4-6")
        return
    provider = model.partition(":")[0]
    providers = {*BUILTIN_PROVIDERS, *unit.config.providers}
    from_config = model == unit.config.defaults.model and not (unit.wf.spec.agents[agent_name].model
                                                              or unit.wf.spec.defaults.model)
    if provider not in providers and not from_config:  # orchestr.yaml's own is reported there, once
        suggestion = did_you_mean(provider, providers)
        where = ("agents", agent_name, "model") if unit.wf.spec.agents[agent_name].model else ("defaults", "model")
        yield Diagnostic(
            unit.span(where),
            f"unknown provider '{provider}' in model '{model}'" + (f"; {suggestion}" if suggestion else ""),
            hint="built in: anthropic, openai; declare others under providers: in orchestr.yaml",
        )


def _tools_within_context(
    unit: Unit, i: int, step: AgentStep, tools: tuple[str, ...], context: ResolvedContext
) -> Iterator[Diagnostic]:
    permissions = EffectivePermissions(context.permission_levels())
    for tool in tools:
        decision = permissions.check_tool(tool)
        if not decision.allowed:
            yield Diagnostic(
                unit.span(("steps", i, "agent")),
                f"agent '{step.agent}' is given tool '{tool}' but its context does not allow it: {decision.reason}",
                hint="remove the tool from the agent, or allow it in the context chain",
            )


# --- expressions ------------------------------------------------------------------------------


def _expression_sites(step: Step, i: int) -> Iterator[tuple[PathKey, str, bool, bool]]:
    """(path, text, is_condition, sees_itself) for every place a step may use `${{ }}`.

    Checks run after the step's action, so they may read the step's own outputs.
    """
    if step.if_ is not None:
        yield ("steps", i, "if"), step.if_, True, False
    for key, value in step.env.items():
        yield ("steps", i, "env", key), value, False, False
    if isinstance(step, AgentStep):
        yield ("steps", i, "prompt"), step.prompt, False, False
    if isinstance(step, ApprovalStep):
        yield ("steps", i, "approval", "message"), step.approval.message, False, False
    for j, check in enumerate(step.verify):
        if isinstance(check, ExprCheck):
            yield ("steps", i, "verify", j, "expr"), check.expr, True, True
        for attr in ("file_exists", "file_contains", "json_schema"):
            target = getattr(check, attr, None)
            path = target if isinstance(target, str) else getattr(target, "path", None)
            if isinstance(path, str):
                yield ("steps", i, "verify", j, attr), path, False, True


def _expressions(
    unit: Unit, upstream: Ancestry, contexts: dict[StepId, ResolvedContext | None]
) -> Iterator[Diagnostic]:
    """Check every expression; with a dependency cycle (`upstream` empty) skip the upstream rule."""
    ids = {s.id for s in unit.steps}
    graph = _Graph(upstream, known=bool(upstream))
    for key, value in unit.wf.spec.env.items():
        yield from _check_text(unit, ("env", key), value, False, _ref_checker(unit, None, graph, ids, None))
    for i, step in enumerate(unit.steps):
        step_id = StepId(step.id)
        check = _ref_checker(unit, step_id, graph, ids, contexts.get(step_id))
        check_own = _ref_checker(unit, step_id, graph.including_self(), ids, contexts.get(step_id))
        for at, text, is_condition, own in _expression_sites(step, i):
            yield from _check_text(unit, at, text, is_condition, check_own if own else check,
                                   status_allowed=at == ("steps", i, "if"))


@dataclass(frozen=True)
class _Graph:
    """Which steps run before which, for "may this step read steps.X?"."""

    upstream: Ancestry
    known: bool
    sees_itself: bool = False

    def including_self(self) -> _Graph:
        return _Graph(self.upstream, self.known, sees_itself=True)

    def before(self, step: StepId, target: StepId) -> bool:
        return not self.known or self.upstream.is_upstream(step, target) or (
            self.sees_itself and target == step
        )

    def after(self, step: StepId, target: StepId) -> bool:
        return self.upstream.is_upstream(target, step)


def _check_text(
    unit: Unit, at: PathKey, text: str, is_condition: bool, check: Callable[[Ref], tuple[str, str] | None], *,
    status_allowed: bool = False,
) -> Iterator[Diagnostic]:
    sources = [condition_source(text)] if is_condition else [expr for _, expr in find(text)]
    for expr in sources:
        if not expr:
            yield Diagnostic(unit.span(at), "empty expression", hint="write one, e.g. ${{ inputs.mode == 'full' }}, or remove it")
            continue
        try:
            analysis = analyze(expr)
        except ExpressionError as exc:
            # jinja parses `${{ x }}` as a print statement: say "expression", which the user wrote
            message = str(exc).replace("'end of print statement'", "end of expression")
            yield Diagnostic(unit.span(at), message, hint="expressions use Jinja syntax: a.b, a['b-c'], ==, and, or, not")
            continue
        for found in analysis.problems:
            yield Diagnostic(unit.span(at), found.message, hint=found.hint)
        if analysis.status_calls and not status_allowed:
            yield _status_outside_if(unit, at, sorted(analysis.status_calls))
        for ref in analysis.refs:
            problem = check(ref)
            if problem:
                yield Diagnostic(unit.span(at), problem[0], hint=problem[1])


def _status_outside_if(unit: Unit, at: PathKey, called: list[str]) -> Diagnostic:
    names = ", ".join(f"{name}()" for name in called)
    return Diagnostic(
        unit.span(at),
        f"{names} can be used only in a step's `if:` (status functions: "
        + ", ".join(f"{name}()" for name in STATUS_FUNCTIONS) + ")",
        hint="elsewhere read an upstream step's status: steps.ID.status == 'failed'",
    )


_READABLE = "inputs.NAME, vars.NAME (from the context), env.NAME, steps.ID.outputs.NAME"


def _ref_checker(
    unit: Unit,
    step: StepId | None,
    graph: _Graph,
    ids: set[str],
    context: ResolvedContext | None,
) -> Callable[[Ref], tuple[str, str] | None]:
    inputs = unit.wf.spec.inputs

    def check(ref: Ref) -> tuple[str, str] | None:
        head = ref.path[0] if ref.path else None
        if ref.root not in ROOTS:
            suggestion = did_you_mean(ref.root, ROOTS)
            hint = "secrets are environment variables: read env.NAME" if ref.root == "secrets" else f"read {_READABLE}"
            return (f"expression reads '{ref}': expressions can read only {', '.join(ROOTS)}"
                    + (f"; {suggestion}" if suggestion else ""), hint)
        if ref.root == "inputs" and head is not None and head not in inputs:
            suggestion = did_you_mean(head, set(inputs))
            return (f"unknown input '{head}'" + (f"; {suggestion}" if suggestion else "")
                    + f" (declared: {', '.join(inputs) or 'none'})", f"declare it under `inputs:`, e.g. {head}: {{ default: ... }}")
        if ref.root == "vars" and head is not None:
            known = context.vars if context is not None else {}
            if head not in known:
                suggestion = did_you_mean(head, set(known))
                where = f"context '{context.id}'" if context else "this step (it has no context)"
                node = f"contexts/{context.id}.yaml" if context else "a context node, and set `context:`"
                return (f"unknown var '{head}' in {where}" + (f"; {suggestion}" if suggestion else ""),
                        f"vars come from the context chain: add {head} under `vars:` in {node}")
        if ref.root == "steps":
            problem = _step_ref_problem(ref.path, step, graph, ids)
            return (problem, "") if problem else None
        return None

    return check


def _step_ref_problem(path: tuple[str, ...], step: StepId | None, graph: _Graph, ids: set[str]) -> str | None:
    if not path:
        return "`steps` must be followed by a step id, e.g. steps.fetch.outputs.count"
    target = StepId(path[0])
    if target not in ids:
        suggestion = did_you_mean(target, ids)
        return f"expression reads unknown step '{target}'" + (f"; {suggestion}" if suggestion else "")
    if step is None:
        return f"workflow-level env cannot read steps.{target}: it is set before any step runs"
    if target == step and not graph.sees_itself:
        return f"step '{step}' reads its own steps.{step} before it has run: only its verify checks may"
    if graph.after(step, target):
        return (f"step '{step}' reads steps.{target}, but '{target}' runs after it (it needs '{step}'): "
                f"move this expression to a step that runs after '{target}'")
    if not graph.before(step, target):
        return (f"step '{step}' reads steps.{target}, but '{target}' is not upstream of it: "
                f"add `needs: [{target}]` to step '{step}'")
    if len(path) < 2 or path[1] not in STEP_FIELDS:
        return f"steps.{target} must be followed by one of: {', '.join(STEP_FIELDS)}"
    return None


def _shell_source(unit: Unit) -> Iterator[Diagnostic]:
    """A `${{ }}` in shell source would splice data into code: reject it and spell out the fix."""
    for i, step in enumerate(unit.steps):
        if isinstance(step, ShellStep) and find(step.run):
            _, expr = find(step.run)[0]
            yield Diagnostic(
                unit.span(("steps", i, "run")),
                f"`${{{{ {expr} }}}}` inside run: would put a value into shell source",
                hint=f'pass it as an environment variable: env: {{ VALUE: "${{{{ {expr} }}}}" }} and use "$VALUE" in run:',
            )
        for j, check in enumerate(step.verify):
            command = getattr(check, "command", None)
            if isinstance(command, str) and find(command):
                yield Diagnostic(
                    unit.span(("steps", i, "verify", j, "command")),
                    "`${{ }}` inside a command check would put a value into shell source",
                    hint="use an `expr:` check for values, or read them from a file in the command",
                )


# --- building the plan ------------------------------------------------------------------------


def _build(
    unit: Unit,
    order: list[StepId],
    contexts: dict[StepId, ResolvedContext | None],
) -> Plan:
    by_id = {StepId(s.id): s for s in unit.steps}
    layers: dict[StepId, int] = {}
    planned: dict[StepId, PlannedStep] = {}
    for step_id in order:
        step = by_id[step_id]
        layers[step_id] = 1 + max((layers[StepId(n)] for n in step.needs), default=-1)
        agent = _resolved_agent(unit, step) if isinstance(step, AgentStep) else None
        planned[step_id] = PlannedStep(
            id=step_id,
            spec=step,
            needs=tuple(StepId(n) for n in step.needs),
            layer=layers[step_id],
            retry=_retry(unit, step),
            timeout=_timeout(unit, step),
            context=contexts[step_id],
            permissions=_permissions(unit, step, contexts[step_id]) if isinstance(step, AgentStep) else None,
            agent=agent,
            servers=_servers(unit, agent),
        )
    depth = max(layers.values(), default=-1) + 1
    buckets: list[list[StepId]] = [[] for _ in range(depth)]
    for step_id in order:  # one pass: grouping by scanning `order` once per layer was O(n^2) on a chain
        buckets[layers[step_id]].append(step_id)
    grouped = tuple(tuple(bucket) for bucket in buckets)
    return Plan(
        workflow=unit.wf.name,
        path=unit.wf.path,
        display=unit.wf.display,
        root=unit.tree.root,
        spec=unit.wf.spec,
        steps=planned,
        layers=grouped,
        secrets=tuple(dict.fromkeys((*unit.config.secrets, *unit.wf.spec.secrets))),
    )


def _servers(unit: Unit, agent: ResolvedAgent | None) -> tuple[ServerReach, ...]:
    servers = unit.config.mcp_servers
    used = servers_used(agent.tools, set(servers)) if agent is not None else []
    return tuple(server_reach(name, servers[name]) for name in used)


def _resolved_agent(unit: Unit, step: AgentStep) -> ResolvedAgent:
    agent = unit.wf.spec.agents[step.agent]
    model = resolve_model(unit, step.agent)
    assert model is not None
    return ResolvedAgent(
        name=step.agent,
        spec=agent,
        model=model,
        tools=agent.tools,
        max_turns=step.max_turns or agent.max_turns,
        budget=step.budget or agent.budget,
    )


def _retry(unit: Unit, step: Step) -> Retry:
    retry = Retry()
    if isinstance(step, ApprovalStep):  # a person is asked once; defaults do not make it ask again
        return retry
    for layer in (unit.config.defaults.retry, unit.wf.spec.defaults.retry, step.retry):
        if layer is not None:
            retry = layer.merged_over(retry)
    return retry


def _timeout(unit: Unit, step: Step) -> timedelta | None:
    if isinstance(step, ApprovalStep):
        return step.approval.timeout  # how long a person has to decide (enforced by the approval itself)
    return step.timeout or unit.wf.spec.defaults.timeout or unit.config.defaults.timeout


def _permissions(unit: Unit, step: AgentStep, context: ResolvedContext | None) -> EffectivePermissions:
    agent = unit.wf.spec.agents[step.agent]
    levels: list[PermissionLevel] = list(context.permission_levels()) if context else []
    levels.append(PermissionLevel(source=f"agent {step.agent}", tools=agent.tools))
    if agent.permissions is not None:
        levels.append(permission_level(f"agent {step.agent}", agent.permissions))
    if step.permissions is not None:
        levels.append(permission_level(f"step {step.id}", step.permissions))
    return EffectivePermissions(tuple(levels))
