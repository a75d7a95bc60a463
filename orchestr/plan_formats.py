"""The Plan as Mermaid, Graphviz dot and JSON (pure functions)."""

from __future__ import annotations

import json
import re
from datetime import timedelta

from pydantic import BaseModel

from orchestr.models import format_duration
from orchestr.plan import Plan, PlannedStep


def _node_id(step_id: str) -> str:
    return "s_" + re.sub(r"[^A-Za-z0-9_]", "_", step_id)


def _label(step: PlannedStep, *, newline: str) -> str:
    detail = step.agent.name if step.agent else ("approval" if step.kind == "approval" else "shell")
    label = f"{step.id} ({detail})"
    return label if step.condition is None else f"{label}{newline}if: {step.condition}"


def _runs_on_trouble(step: PlannedStep) -> bool:
    """A step that may run when something upstream did not succeed: its edges are drawn dashed."""
    from orchestr.expressions import status_calls

    return step.condition is not None and bool(status_calls(step.condition) - {"success"})


def to_mermaid(plan: Plan) -> str:
    lines = ["flowchart TD"]
    for step in plan.steps.values():
        shape = {"agent": ("[[", "]]"), "approval": ("{{", "}}")}.get(step.kind, ("[", "]"))
        label = _label(step, newline="\n")
        label = label.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;").replace("\n", "<br/>")
        lines.append(f'    {_node_id(step.id)}{shape[0]}"{label}"{shape[1]}')
    for step in plan.steps.values():
        arrow = "-.->" if _runs_on_trouble(step) else "-->"
        for need in step.needs:
            lines.append(f"    {_node_id(need)} {arrow} {_node_id(step.id)}")
    return "\n".join(lines) + "\n"


def to_dot(plan: Plan) -> str:
    lines = [f"digraph {json.dumps(plan.workflow)} {{", "    rankdir=LR;", "    node [shape=box];"]
    for step in plan.steps.values():
        shape = {"agent": ", style=rounded", "approval": ", shape=hexagon"}.get(step.kind, "")
        lines.append(f"    {json.dumps(step.id)} [label={json.dumps(_label(step, newline=chr(10)))}{shape}];")
    for step in plan.steps.values():
        edge = " [style=dashed]" if _runs_on_trouble(step) else ""
        for need in step.needs:
            lines.append(f"    {json.dumps(need)} -> {json.dumps(step.id)}{edge};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_json(plan: Plan) -> dict[str, object]:
    schedule = plan.spec.schedule
    return {
        "workflow": plan.workflow,
        "file": plan.display,
        "schedule": _model_json(schedule) if schedule else None,
        "layers": [list(layer) for layer in plan.layers],
        "steps": [_step_json(step) for step in plan.steps.values()],
    }


def _step_json(step: PlannedStep) -> dict[str, object]:
    from orchestr.models import check_kind

    return {
        "id": step.id,
        "kind": step.kind,
        "needs": list(step.needs),
        "layer": step.layer,
        "if": step.condition,
        "condition": step.effective_condition,
        "context": step.context.id if step.context else None,
        "context_chain": [n.id for n in step.context.chain] if step.context else [],
        "agent": step.agent.name if step.agent else None,
        "model": step.agent.model if step.agent else None,
        "tools": list(step.agent.tools) if step.agent else [],
        "permissions": step.permissions.summary() if step.permissions else None,
        "mcp_servers": {server.name: server.describe() for server in step.servers},
        "timeout": format_duration(step.timeout) if step.timeout else None,
        "retry": _model_json(step.retry),
        "verify": [check_kind(c) for c in step.spec.verify],
        "approval": _approval_json(step),
    }


def _approval_json(step: PlannedStep) -> dict[str, object] | None:
    from orchestr.models import ApprovalStep

    return _model_json(step.spec.approval) if isinstance(step.spec, ApprovalStep) else None


def _model_json(model: BaseModel) -> dict[str, object]:
    """A spec model as JSON, with durations written as in the YAML (`90s`, `5m`), not ISO 8601."""
    return {key: format_duration(value) if isinstance(value, timedelta) else value
            for key, value in model.model_dump(mode="python").items()}
