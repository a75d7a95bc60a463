"""Compiler passes over keys that need no graph: the files a step attaches, checks that cannot pass,
and inputs a scheduled run could never be given.

Each catches, before anything runs, what would otherwise only show up as a failed or unverified step
(or a failed scheduled slot) after the model has been paid for.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from orchestr.context import project_file_problem
from orchestr.errors import Diagnostic
from orchestr.expressions import find
from orchestr.models import AgentStep, ApprovalStep, ExitCodeCheck, ShellStep, ToolCalledCheck

if TYPE_CHECKING:
    from orchestr.compiler import Unit


def attached_files(unit: Unit) -> Iterator[Diagnostic]:
    """An agent step's `files:` must lie inside the project and exist.

    A step with `needs:` may attach what an upstream step writes, so for it a missing file is left
    to the attempt (which errors naming it); the path itself is still checked here.
    """
    for i, step in enumerate(unit.steps):
        if not isinstance(step, AgentStep):
            continue
        for j, name in enumerate(step.files):
            problem = project_file_problem(unit.tree.root, name, unit.span(("steps", i, "files", j)),
                                           must_exist=not step.needs)
            if problem is not None:
                yield problem


def impossible_checks(unit: Unit) -> Iterator[Diagnostic]:
    """`exit_code` on an agent step and `tool_called` on a shell step would leave it unverified forever."""
    for i, step in enumerate(unit.steps):
        for j, check in enumerate(step.verify):
            if isinstance(step, AgentStep) and isinstance(check, ExitCodeCheck):
                yield Diagnostic(
                    unit.span(("steps", i, "verify", j, "exit_code")),
                    f"step '{step.id}' is an agent step, which has no exit code: this `exit_code` check could never pass",
                    hint="check what the agent produced instead: file_exists, file_contains, json_schema or tool_called",
                )
            elif isinstance(step, ShellStep) and isinstance(check, ToolCalledCheck):
                yield Diagnostic(
                    unit.span(("steps", i, "verify", j, "tool_called")),
                    f"step '{step.id}' is a shell step, which makes no tool calls: this `tool_called` check "
                    "could never pass",
                    hint="check what the command did instead: exit_code, file_exists, file_contains or command",
                )
            elif isinstance(step, AgentStep) and isinstance(check, ToolCalledCheck):
                yield from _tool_never_given(unit, i, j, step, check)


def _tool_never_given(unit: Unit, i: int, j: int, step: AgentStep, check: ToolCalledCheck) -> Iterator[Diagnostic]:
    """A `tool_called` check naming a tool the agent was not given could only fail, after paying for every turn."""
    agent = unit.wf.spec.agents.get(step.agent)
    name = check.tool_called.name
    if agent is None or any(fnmatchcase(name, tool) for tool in agent.tools):
        return
    given = ", ".join(agent.tools) or "none"
    hint = f"add it to the agent's tools: `tools: [{', '.join((*agent.tools, name))}]` under agents.{step.agent}"
    if re.search(r"^\s*tools\s*:", agent.instructions, re.MULTILINE):
        hint = (f"`tools:` is inside the text of agents.{step.agent}.instructions (a wrong indent?): "
                "indent it like `instructions:`, as a key of the agent")
    yield Diagnostic(
        unit.span(("steps", i, "verify", j, "tool_called")),
        f"agent '{step.agent}' is not given tool '{name}' (its tools: {given}): "
        f"this `tool_called` check on step '{step.id}' could never pass",
        hint=hint,
    )


def scheduled_inputs(unit: Unit) -> Iterator[Diagnostic]:
    """A tick passes no `-i`: a required input without a default would fail every scheduled run."""
    for name, spec in unit.wf.spec.inputs.items():
        if spec.required and spec.default is None:
            yield Diagnostic(
                unit.wf.doc.key_span(("inputs", name)),
                f"input '{name}' is required and has no default, but this workflow has a `schedule:` "
                "and a scheduled run cannot be given inputs",
                hint=f"give it a default, e.g. {name}: {{ default: ... }} (`orchestr run -i {name}=VALUE` still "
                "overrides it), or move the schedule to a workflow that needs no inputs",
            )


def approval_steps(unit: Unit) -> Iterator[Diagnostic]:
    """`show:` files inside the project; `notify:` is shell source; the step's own `timeout`/`retry`
    would mean something else than the approval's (a person is asked once, for `approval.timeout`)."""
    for i, step in enumerate(unit.steps):
        if not isinstance(step, ApprovalStep):
            continue
        for j, name in enumerate(step.approval.show):
            problem = project_file_problem(unit.tree.root, name, unit.span(("steps", i, "approval", "show", j)),
                                           must_exist=False)
            if problem is not None:
                yield problem
        notify = step.approval.notify
        if notify is not None and find(notify):
            yield Diagnostic(unit.span(("steps", i, "approval", "notify")),
                             "`${{ }}` inside notify: would put a value into shell source",
                             hint="read $ORCHESTR_APPROVAL_MESSAGE and $ORCHESTR_APPROVE_COMMAND in the command instead")
        for key, fix in (("timeout", "set `approval.timeout:` (how long a person has to decide)"),
                         ("retry", "remove it: a person is asked once, and a rejection is final")):
            if key in step.model_fields_set:
                yield Diagnostic(unit.span(("steps", i, key)), f"an approval step has no `{key}:`", hint=fix)
