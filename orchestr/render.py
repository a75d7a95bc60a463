"""Rich renderables for static views: the context tree, permissions, the plan. No Console here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from orchestr.models import PERMISSION_KEYS, format_duration

if TYPE_CHECKING:
    from orchestr.context import ContextTree
    from orchestr.permissions import EffectivePermissions
    from orchestr.plan import Plan, PlannedStep


def render_context_tree(tree: ContextTree) -> Tree:
    top = Tree(Text("contexts/", style="bold"))

    def add(branch: Tree, parent: str | None) -> None:
        from orchestr.context import NodeId

        for node in tree.children(NodeId(parent) if parent else None):
            label = Text.assemble((node.id.rpartition("/")[2], "bold cyan"), "  ", node.spec.title)
            if node.spec.rules:
                label.append(f"  ({len(node.spec.rules)} rules)", style="dim")
            add(branch.add(label), node.id)

    add(top, None)
    return top


def render_permissions(permissions: EffectivePermissions) -> Table:
    table = Table(title="Effective permissions", title_justify="left", show_lines=False)
    table.add_column("key", style="bold")
    table.add_column("allowed (every level that sets the key must allow)")
    table.add_column("set by", style="dim")
    described = permissions.describe()
    for key in PERMISSION_KEYS:
        levels = described.get(key, [])
        if not levels:
            default = "anything inside the project" if key in ("read", "write") else "nothing"
            table.add_row(key, Text(f"(unset: {default})", style="dim"), "")
            continue
        for i, level in enumerate(levels):
            listed = level["patterns"]
            patterns = ", ".join(map(str, listed if isinstance(listed, list) else [])) or "(nothing)"
            table.add_row(key if i == 0 else "", patterns, str(level["source"]))
    return table


def _permissions_cell(step: PlannedStep) -> str:
    if step.permissions is None:
        return "-"
    summary = step.permissions.summary()
    parts = [f"{k}: {', '.join(v)}" for k, v in summary.items() if v is not None]
    return "\n".join(parts) or "-"


def render_plan(plan: Plan) -> Table:
    spec = plan.spec
    caption = spec.description or ""
    if spec.schedule:
        caption += f"\nschedule: {spec.schedule.cron} ({spec.schedule.timezone})"
    table = Table(title=f"{plan.workflow}  [dim]{plan.display}[/]", caption=caption.strip() or None,
                  caption_justify="left", title_justify="left", show_lines=True)
    for column in ("layer", "step", "kind", "needs", "if", "context", "agent / model", "permissions",
                   "timeout / retry", "verify"):
        table.add_column(column)
    for step in plan.steps.values():
        agent = f"{step.agent.name}\n{step.agent.model}" if step.agent else _approval_cell(step)
        retry = f"{format_duration(step.timeout) if step.timeout else '-'} / x{step.retry.attempts}"
        checks = "\n".join(_check_name(c) for c in step.spec.verify) or "-"
        table.add_row(str(step.layer), step.id, step.kind, ", ".join(step.needs) or "-", _condition_cell(step),
                      step.context.id if step.context else "-", agent, _permissions_cell(step), retry, checks)
    return table


def _approval_cell(step: PlannedStep) -> str:
    """An approval step: what a person is asked and shown, and how long they have."""
    from orchestr.models import ApprovalStep

    if not isinstance(step.spec, ApprovalStep):
        return "-"
    approval = step.spec.approval
    lines = [f"asks: {approval.message}", *(f"shows: {name}" for name in approval.show),
             f"decide within {format_duration(approval.timeout)}"]
    if approval.notify:
        lines.append(f"notify: {approval.notify.strip().splitlines()[0]}")
    return "\n".join(lines)


def _condition_cell(step: PlannedStep) -> Text:
    """The `if:` as written; the implicit `success()` (every need succeeded) is shown dimmed."""
    if step.condition is None:
        return Text("success()" if step.needs else "-", style="dim")
    return Text(step.condition)


def _check_name(check: object) -> str:
    from orchestr.models import check_kind

    return check_kind(check)  # type: ignore[arg-type]
