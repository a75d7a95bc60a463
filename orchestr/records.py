"""Run records as JSON and as Rich tables/trees for `orchestr runs`."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from orchestr.events import parse_iso
from orchestr.store import RunRow, Store
from orchestr.trace import STATUS_STYLE


def _duration(start: str | None, end: str | None) -> str:
    if not start or not end:
        return "-"
    seconds = (parse_iso(end) - parse_iso(start)).total_seconds()
    return f"{seconds:.2f}s"


def run_summary(row: RunRow) -> dict[str, Any]:
    return {
        "id": row.id, "workflow": row.workflow, "status": row.effective_status, "trigger": row.trigger,
        "started_at": row.started_at, "finished_at": row.finished_at, "exit_code": row.exit_code,
        "pid": row.pid, "slot": row.slot, "error": row.error, "tokens": row.tokens, "inputs": row.inputs,
        "options": row.options,
    }


def runs_table(rows: list[RunRow]) -> Table:
    table = Table(title="runs", title_justify="left")
    for column in ("run", "workflow", "status", "trigger", "started (UTC)", "duration", "exit"):
        table.add_column(column, no_wrap=column in ("run", "started (UTC)"))
    for row in rows:
        status = row.effective_status
        table.add_row(row.id, row.workflow, Text(status, style=STATUS_STYLE.get(status, "red" if status == "crashed" else "")),
                      row.trigger, row.started_at[:19].replace("T", " "), _duration(row.started_at, row.finished_at),
                      "-" if row.exit_code is None else str(row.exit_code))
    if not rows:
        table.caption = "no runs yet: try `orchestr run WORKFLOW`"
    return table


def run_detail(store: Store, row: RunRow) -> dict[str, Any]:
    attempts = store.attempts(row.id)
    steps = []
    for step in store.steps(row.id):
        step["attempt_records"] = [a for a in attempts if a["step_id"] == step["step_id"]]
        steps.append(step)
    from orchestr.approvals.records import ApprovalBook

    approvals = [r.to_json() for r in ApprovalBook(store).of_run(row.id)]
    return {**run_summary(row), "steps": steps, "approvals": approvals}


def run_tree(detail: dict[str, Any]) -> Tree:
    status = detail["status"]
    tree = Tree(Text.assemble(("run ", "bold"), (detail["id"], "bold cyan"), f"  {detail['workflow']}  ",
                              (status, STATUS_STYLE.get(status, "red")), f"  exit {detail['exit_code']}"))
    if detail.get("error"):
        tree.add(Text(f"error: {detail['error']}", style="red"))
    tokens = detail.get("tokens") or {}
    if any(tokens.values()):
        tree.add(f"tokens: in {tokens.get('input', 0)} out {tokens.get('output', 0)} cached {tokens.get('cached', 0)}")
    for step in detail["steps"]:
        style = STATUS_STYLE.get(step["status"], "")
        branch = tree.add(Text.assemble((step["step_id"], "bold"), "  ", (step["status"], style),
                                        f"  {step['attempts']} attempt(s)", f"  {step['reason']}" if step.get("reason") else ""))
        for attempt in step["attempt_records"]:
            _add_attempt(branch, attempt)
        for approval in (a for a in detail.get("approvals", []) if a["step"] == step["step_id"]):
            _add_approval(branch, approval)
    return tree


def _add_approval(branch: Tree, approval: dict[str, Any]) -> None:
    """Who was asked what, and who decided and why (or that nobody has yet)."""
    decided = (f"{approval['decision']} by {approval['decided_by']} at {approval['decided_at']}"
               + (f": {approval['comment']}" if approval.get("comment") else "")) if approval["decision"] else "waiting"
    branch.add(Text(f"approval {approval['request']}: asked {approval['message']!r} at {approval['requested_at']}"
                    f" -> {decided}", style="blue" if not approval["decision"] else ""))


def _add_attempt(branch: Tree, attempt: dict[str, Any]) -> None:
    node = branch.add(Text.assemble(f"attempt {attempt['attempt']}: ", (attempt["status"], STATUS_STYLE.get(attempt["status"], "")),
                                    f"  {_duration(attempt['started_at'], attempt['finished_at'])}",
                                    f"  exit {attempt['exit_code']}" if attempt.get("exit_code") is not None else "",
                                    f"  {attempt['error']}" if attempt.get("error") else ""))
    for call in attempt.get("tool_calls") or []:
        node.add(Text(f"tool {call['tool']} {call['args']} -> {call['outcome']} ({call['duration_ms']}ms)",
                      style="green" if call["outcome"] == "ok" else "red"))
    for check in attempt.get("verification") or []:
        node.add(Text(f"{'✓' if check['passed'] else '✗'} {check['check']} {check['target']}: {check['detail']}",
                      style="green" if check["passed"] else "red"))
    if attempt.get("stderr_tail") and attempt["status"] != "succeeded":
        node.add(Text("stderr: " + attempt["stderr_tail"].splitlines()[-1][:200], style="dim"))
