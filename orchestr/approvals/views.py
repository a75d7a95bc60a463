"""`orchestr approvals` renderings. No Console here: callers print what these return."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from rich.console import Group, RenderableType
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from orchestr.approvals.decide import changed_files
from orchestr.approvals.files import baseline_path, diff, pretty, read_text, shown_path
from orchestr.approvals.records import ApprovalRecord
from orchestr.events import parse_iso
from orchestr.health import format_elapsed


def state_of(record: ApprovalRecord, now: datetime) -> str:
    if record.decision is not None:
        return record.decision if record.consumed else f"{record.decision} (run not resumed yet)"
    return "overdue: past its timeout" if record.expired(now) else "waiting"


def approvals_table(records: list[ApprovalRecord], *, now: datetime) -> Table | Text:
    if not records:
        return Text("no approvals waiting", style="dim")
    table = Table(title="Approvals", title_justify="left")
    for column in ("run", "workflow", "step", "asks", "requested", "timeout", "state"):
        table.add_column(column)
    for record in records:
        state = state_of(record, now)
        style = "red" if state.startswith("overdue") else ("blue" if state == "waiting" else "")
        left = parse_iso(record.expires_at) - now
        timeout = record.expires_at if left.total_seconds() <= 0 else f"{record.expires_at} ({format_elapsed(left)} left)"
        table.add_row(record.run_id, record.workflow, record.step_id, record.message, record.requested_at, timeout,
                      Text(state, style=style))
    return table


def render_request(record: ApprovalRecord, *, root: Path, work_dir: Path, now: datetime) -> RenderableType:
    """One request: what is asked, its state, and every shown file (pretty JSON, a diff when it existed before)."""
    head = Text.assemble((f"{record.workflow} · run {record.run_id} · step {record.step_id}", "bold"), "\n",
                         (record.message, "bold blue"), "\n",
                         f"requested {record.requested_at} · decide by {record.expires_at} · {state_of(record, now)}")
    if record.decided_by:
        head.append(f"\n{record.decision} by {record.decided_by} at {record.decided_at}"
                    + (f": {record.comment}" if record.comment else ""))
    if record.notify and record.notify != "ok":
        head.append(f"\nnotify {record.notify}", style="yellow")
    parts: list[RenderableType] = [head]
    changed = set(changed_files(record, root)) if record.decision is None else set()
    for shown in record.files:
        parts.append(_file_view(record, shown.path, shown.baseline, shown.sha256, work_dir, changed=shown.path in changed))
    return Group(*parts)


def _file_view(record: ApprovalRecord, name: str, has_baseline: bool, sha: str, work_dir: Path, *,
               changed: bool) -> RenderableType:
    title = Text.assemble("\n── ", (name, "bold"), f"  sha256 {sha[:12]}")
    if changed:
        title.append("  CHANGED since it was shown: `approve` will refuse", style="bold red")
    copy = shown_path(work_dir, record.step_id, record.request, name)
    if not copy.is_file():
        return Group(title, Text("(the copy kept at request time is missing)", style="red"))
    after = pretty(read_text(copy), name)
    if has_baseline and baseline_path(work_dir, name).is_file():
        before = pretty(read_text(baseline_path(work_dir, name)), name)
        return Group(title, Syntax(diff(before, after, name), "diff", theme="ansi_dark", word_wrap=True))
    lexer = "json" if name.endswith(".json") else Syntax.guess_lexer(name, after)
    return Group(title, Syntax(after, lexer, theme="ansi_dark", word_wrap=True))


def status_lines(records: list[ApprovalRecord], *, now: datetime) -> tuple[list[str], list[str]]:
    """(one line per approval not acted on, the problems: those past their timeout unanswered)."""
    lines, problems = [], []
    for record in records:
        state = state_of(record, now)
        line = (f"approval {record.workflow} run {record.run_id} step {record.step_id}: {state} "
                f"(asks: {record.message}; decide by {record.expires_at}; `orchestr approvals show {record.run_id}`)")
        lines.append(line)
        if record.expired(now):
            problems.append(f"run {record.run_id} of {record.workflow}: the approval at step {record.step_id} "
                            f"was not answered by {record.expires_at}; the next tick (or approve/reject) fails it")
    return lines, problems
