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
        "pid": row.pid, "host": row.host, "slot": row.slot, "error": row.error, "tokens": row.tokens, "inputs": row.inputs,
        "options": row.options,
    }


def runs_table(rows: list[RunRow]) -> Table:
    table = Table(title="runs", title_justify="left")
    for column in ("run", "workflow", "status", "trigger", "host", "started (UTC)", "duration", "exit"):
        table.add_column(column, no_wrap=column in ("run", "started (UTC)"))
    for row in rows:
        status = row.effective_status
        table.add_row(row.id, row.workflow, Text(status, style=STATUS_STYLE.get(status, "red" if status == "crashed" else "")),
                      row.trigger, row.host or "-", row.started_at[:19].replace("T", " "), _duration(row.started_at, row.finished_at),
                      "-" if row.exit_code is None else str(row.exit_code))
    if not rows:
        table.caption = "no runs yet: try `orchestr run WORKFLOW`"
    return table


def event_json(row: dict[str, Any]) -> dict[str, Any]:
    """A stored event row as its docs/events.md line (without `run` and `workflow`, which the run has)."""
    record: dict[str, Any] = {"seq": row["seq"], "ts": row["ts"], "event": row["event"]}
    if row["step"] is not None:
        record["step"] = row["step"]
    if row["attempt"] is not None:
        record["attempt"] = row["attempt"]
    record.update(row["data"])
    return record


def run_detail(store: Store, row: RunRow) -> dict[str, Any]:
    attempts = store.attempts(row.id)
    events = [event_json(e) for e in store.events(row.id)]
    steps = []
    for step in store.steps(row.id):
        step["attempt_records"] = [a for a in attempts if a["step_id"] == step["step_id"]]
        for attempt in step["attempt_records"]:
            attempt["model_calls"] = [_model_call(e) for e in events if e["event"] == "model.call"
                                      and e.get("step") == step["step_id"] and e.get("attempt") == attempt["attempt"]]
        steps.append(step)
    from orchestr.approvals.records import ApprovalBook

    approvals = [r.to_json() for r in ApprovalBook(store).of_run(row.id)]
    return {**run_summary(row), "steps": steps, "events": events, "approvals": approvals}


def _model_call(event: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in ("seq", "event", "step", "attempt")}


def run_tree(detail: dict[str, Any]) -> Tree:
    status = detail["status"]
    tree = Tree(Text.assemble(("run ", "bold"), (detail["id"], "bold cyan"), f"  {detail['workflow']}  ",
                              (status, STATUS_STYLE.get(status, "red")),
                              f"  exit {detail['exit_code']}" if detail["exit_code"] is not None else
                              f"  pid {detail['pid']} (follow it: orchestr logs {detail['id']} -f)" if status == "running" else "",
                              f"  on {detail['host']}" if detail.get("host") else ""))
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
    for call in attempt.get("model_calls") or []:
        node.add(Text(f"model {call.get('provider')}:{call.get('model')} turn {call.get('turn', '-')} "
                      f"in={call.get('tokens_in')} out={call.get('tokens_out')} cached={call.get('tokens_cached')} "
                      f"({call.get('duration_ms')}ms)" + (f" {call['error']}" if call.get("error") else ""),
                      style="red" if call.get("error") else "dim"))
    for call in attempt.get("tool_calls") or []:
        said = f": {call['message'][:200]}" if call.get("message") else ""
        node.add(Text(f"tool {call['tool']} {call['args']} -> {call['outcome']} ({call['duration_ms']}ms){said}",
                      style="green" if call["outcome"] == "ok" else "red"))
    for check in attempt.get("verification") or []:
        node.add(Text(f"{'✓' if check['passed'] else '✗'} {check['check']} {check['target']}: {check['detail']}",
                      style="green" if check["passed"] else "red"))
    if attempt.get("stderr_tail") and attempt["status"] != "succeeded":
        node.add(Text("stderr: " + attempt["stderr_tail"].splitlines()[-1][:200], style="dim"))
