"""Rich renderables for static views: the context tree, permissions, the plan. No Console here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.table import Table
from rich.text import Text

from orchestr.models import PERMISSION_KEYS, format_duration

if TYPE_CHECKING:
    from orchestr.permissions import EffectivePermissions
    from orchestr.plan import Plan, PlannedStep
    from orchestr.reach import ServerRow


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


def render_server_reach(rows: Sequence[ServerRow]) -> Table:
    table = Table(title="MCP servers its tools allow", title_justify="left")
    table.add_column("server", style="bold")
    table.add_column("reach")
    table.add_column("usable here")
    for row in rows:
        usable = Text("yes", style="green") if not row.missing else Text("no: " + "; ".join(row.missing), style="red")
        table.add_row(row.name, row.reach.text(), usable)
    return table


def _permissions_cell(step: PlannedStep) -> str:
    if step.permissions is None:
        return "-"
    summary = step.permissions.summary()
    parts = [f"{k}: {', '.join(v) or 'none'}" for k, v in summary.items() if v is not None]
    parts += [f"MCP {server.name} reaches {server.text()}" for server in step.servers]
    return "\n".join(parts) or "-"


# Kept whole (never folded) when the terminal is wide enough for every column's longest word.
_UNBROKEN = (("step", "context", "agent / model", "permissions"), ())
MAX_UNBROKEN = 80


def render_plan(plan: Plan, *, width: int | None = None) -> Table:
    """The plan as a table. Nothing is cut short with "…": with the console's `width`, ids, model
    names and paths are kept whole when they fit, and long values fold onto more lines when not."""
    spec = plan.spec
    caption = spec.description or ""
    if spec.schedule:
        caption += f"\nschedule: {spec.schedule.cron} ({spec.schedule.timezone})"
    table = Table(title=f"{plan.workflow}  [dim]{plan.display}[/]", caption=caption.strip() or None,
                  caption_justify="left", title_justify="left", show_lines=True, show_edge=False)
    columns = ("step", "needs", "if", "context", "agent / model", "permissions", "verify")
    rows = [_plan_row(step) for step in plan.steps.values()]
    longest = {column: min(MAX_UNBROKEN, max((len(word) for row in rows for word in str(row[i]).split()), default=0))
               for i, column in enumerate(columns)}
    unbroken = next(kept for kept in _UNBROKEN if width is None or _needed(columns, longest, kept) <= width)
    for column in columns:
        table.add_column(column, overflow="fold", min_width=max(longest[column], 1) if column in unbroken else None)
    for row in rows:
        table.add_row(*row)
    return table


def _needed(columns: tuple[str, ...], longest: dict[str, int], unbroken: tuple[str, ...]) -> int:
    """The width a table needs to keep `unbroken` whole. Rich shrinks the other columns no further
    than their longest word while some are held at a minimum width: past that it would crop."""
    if not unbroken:
        return 0
    header = {column: max(len(word) for word in column.split()) for column in columns}
    return sum(max(longest[c], header[c]) for c in columns) + 3 * len(columns) - 1  # no outer edge


def _plan_row(step: PlannedStep) -> tuple[str | Text, ...]:
    agent = f"{step.agent.name}\n{step.agent.model}" if step.agent else _approval_cell(step)
    timeout = f"timeout {format_duration(step.timeout)}" if step.timeout else "no timeout"
    checks = "\n".join(_check_name(c) for c in step.spec.verify) or "-"
    about = f"{step.id}\n{step.kind} · layer {step.layer}\n{timeout} · x{step.retry.attempts}"
    return (about, ", ".join(step.needs) or "-", _condition_cell(step),
            step.context.id if step.context else "-", agent, _permissions_cell(step), checks)


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
