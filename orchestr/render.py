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
                count = len(node.spec.rules)
                label.append(f"  ({count} rule{'s' if count != 1 else ''})", style="dim")
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
    parts = [f"{k}: {', '.join(v) or 'none'}" for k, v in summary.items() if v is not None]
    return "\n".join(parts) or "-"


_UNBROKEN = ("step", "context", "agent / model")  # ids and model names: whole, never cut or folded
MAX_UNBROKEN = 80


def render_plan(plan: Plan, *, width: int | None = None) -> Table:
    """The plan as a table; with the console's `width`, ids and model names are kept whole when they fit."""
    spec = plan.spec
    caption = spec.description or ""
    if spec.schedule:
        caption += f"\nschedule: {spec.schedule.cron} ({spec.schedule.timezone})"
    table = Table(title=f"{plan.workflow}  [dim]{plan.display}[/]", caption=caption.strip() or None,
                  caption_justify="left", title_justify="left", show_lines=True)
    columns = ("step", "needs / if", "context", "agent / model", "permissions", "timeout\nretry", "verify")
    rows = [_plan_row(step) for step in plan.steps.values()]
    longest = [max((len(word) for row in rows for word in str(row[i]).split()), default=0) for i in range(len(columns))]
    # Rich folds a column no narrower than its longest word, and crops the table if those do not fit.
    widths = [max(n, *(len(word) for word in column.split())) for column, n in zip(columns, longest, strict=True)]
    fits = width is None or sum(widths) + 3 * len(columns) + 1 <= width
    for column, least in zip(columns, widths, strict=True):
        table.add_column(column, overflow="fold",
                         min_width=min(least, MAX_UNBROKEN) if fits and column in _UNBROKEN else None)
    for row in rows:
        table.add_row(*row)
    return table


def _plan_row(step: PlannedStep) -> tuple[str | Text, ...]:
    agent = f"{step.agent.name}\n{step.agent.model}" if step.agent else "-"
    retry = f"{format_duration(step.timeout) if step.timeout else '-'} / x{step.retry.attempts}"
    checks = "\n".join(_check_name(c) for c in step.spec.verify) or "-"
    needs = Text(", ".join(step.needs) or "-")
    needs.append("\n")
    needs.append_text(_condition_cell(step))
    return (f"{step.id}\n{step.kind} · layer {step.layer}", needs,
            step.context.id if step.context else "-", agent, _permissions_cell(step), retry, checks)


def _condition_cell(step: PlannedStep) -> Text:
    """The `if:` as written; the implicit `success()` (every need succeeded) is shown dimmed."""
    if step.condition is None:
        return Text("success()" if step.needs else "-", style="dim")
    return Text(step.condition)


def _check_name(check: object) -> str:
    from orchestr.models import check_kind

    return check_kind(check)  # type: ignore[arg-type]
