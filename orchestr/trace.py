"""The run trace: plain timestamped lines in CI logs, a Rich live view on a terminal.

Sinks receive events from the bus; they render, never decide. The Console is handed in.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from orchestr.events import Event, LogLine
from orchestr.observability.progress import ProgressBoard, elapsed

if TYPE_CHECKING:
    from orchestr.engine import RunOutcome, StepState
    from orchestr.plan import Plan

STATUS_STYLE = {"succeeded": "green", "failed": "red", "unverified": "yellow", "skipped": "dim",
                "cancelled": "magenta", "pending": "dim", "running": "cyan", "waiting": "blue"}
STATUS_MARK = {"succeeded": "✓", "failed": "✗", "unverified": "!", "skipped": "-", "cancelled": "⊘", "waiting": "⏸"}


def _short(value: object, limit: int = 60) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = text.replace("\n", "⏎")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(event: Event) -> Text | None:
    """One human line for an event (without timestamp), or None for events shown elsewhere."""
    d = event.data
    step = event.step or ""
    if event.event == "run.started":
        return Text.assemble(("run ", "bold"), (event.run, "bold cyan"), f" of {event.workflow} started",
                             " (resumed)" if d.get("resumed") else "")
    if event.event == "step.started":
        return Text.assemble(("▶ ", "cyan"), (step, "bold"), f" attempt {event.attempt}")
    if event.event == "step.retry":
        return Text.assemble(("↻ ", "yellow"), (step, "bold"), f" attempt {event.attempt} did not pass: ",
                             _short(d.get("reason"), 120), f"; retrying in {d.get('wait_seconds')}s")
    if event.event == "verify.result":
        ok = bool(d.get("passed"))
        return Text.assemble(("  ✓ " if ok else "  ✗ ", "green" if ok else "red"), f"{step} verify {d.get('check')} ",
                             _short(d.get("target")), f": {_short(d.get('detail'), 100)}")
    if event.event == "tool.call":
        outcome = str(d.get("outcome"))
        style = {"ok": "green", "denied": "red", "error": "yellow"}.get(outcome, "")
        return Text.assemble("  ↳ ", (step, "bold"), f" tool {d.get('tool')} ", (_short(d.get("args")), "dim"), " ",
                             (outcome, style), f" {d.get('duration_ms')}ms {d.get('result_chars')} chars")
    if event.event == "tool.log":
        style = "yellow" if d.get("level") == "warning" else "red"
        return Text.assemble("  ↳ ", (step, "bold"), f" MCP server {d.get('server')} ", (str(d.get("level")), style),
                             ": ", _short(d.get("message"), 200))
    if event.event == "model.call":
        return Text.assemble("  ↳ ", (step, "bold"), f" model {d.get('provider')}:{d.get('model')} ",
                             f"in={d.get('tokens_in')} out={d.get('tokens_out')} cached={d.get('tokens_cached')} ",
                             f"{d.get('duration_ms')}ms", f" ({d.get('error')})" if d.get("error") else "")
    if event.event == "step.finished":
        status = str(d.get("status"))
        line = Text.assemble((STATUS_MARK.get(status, "?") + " ", STATUS_STYLE.get(status, "")), (step, "bold"),
                             " ", (status, STATUS_STYLE.get(status, "")), f" in {d.get('duration_ms')}ms")
        if d.get("reason"):
            line.append(f": {_short(d.get('reason'), 200)}")
        return line
    if event.event == "approval.requested":
        return Text.assemble(("⏸ ", "blue"), (step, "bold"), " asks: ", _short(d.get("message"), 120),
                             f" · until {d.get('expires_at')} · {d.get('approve')}")
    if event.event == "run.finished":
        status = str(d.get("status"))
        return Text.assemble(("run ", "bold"), (status, "bold " + STATUS_STYLE.get(status, "")),
                             f" (exit {d.get('exit_code')})")
    return None


class PlainTrace:
    """CI logs: one timestamped line per event; `verbose` adds the steps' output lines."""

    def __init__(self, console: Console, *, verbose: bool = False, quiet: bool = False) -> None:
        self.console = console
        self.verbose = verbose
        self.quiet = quiet
        self._lock = threading.Lock()

    def emit(self, event: Event) -> None:
        if self.quiet:
            return
        line = describe(event)
        if line is not None:
            stamp = event.ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            self._print(Text.assemble((stamp + " ", "dim"), line))

    def log(self, line: LogLine) -> None:
        if self.verbose and not self.quiet:
            self._print(Text.assemble(("  │ ", "dim"), (f"{line.step}", "bold"), ": ", line.text))

    def _print(self, text: Text) -> None:
        with self._lock:
            self.console.print(text, soft_wrap=True, highlight=False)


class LiveTrace(PlainTrace):
    """A terminal: finished events scroll above a live panel of running steps with spinners.

    Each running step keeps its Spinner (a new one every refresh would always show its first
    frame) and says what it waits on: the model (turn n/max), a tool, a retry's wait.
    """

    def __init__(self, console: Console, *, verbose: bool = False, quiet: bool = False) -> None:
        super().__init__(console, verbose=verbose, quiet=quiet)
        self.board = ProgressBoard(console.get_time)
        self._spinners: dict[str, Spinner] = {}
        self._live = Live(get_renderable=self.panel, console=console, refresh_per_second=10, transient=True)

    def __enter__(self) -> LiveTrace:
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._live.stop()

    def emit(self, event: Event) -> None:
        self.board.event(event)
        super().emit(event)

    def activity(self, step: str, attempt: int, doing: str) -> None:
        self.board.activity(step, attempt, doing)

    def log(self, line: LogLine) -> None:
        self.board.output(line.step)
        super().log(line)

    def _print(self, text: Text) -> None:
        with self._lock:
            self._live.console.print(text, soft_wrap=True, highlight=False)

    def panel(self) -> RenderableType:
        rows: list[RenderableType] = []
        now = self.console.get_time()
        running = self.board.running()
        for gone in set(self._spinners) - {p.step for p in running}:
            del self._spinners[gone]
        for progress in running:
            label = Text.assemble((progress.step, "bold"), f"  {elapsed(now - progress.began):>6}",
                                  f"  attempt {progress.attempt}" if progress.attempt > 1 else "",
                                  ("  " + progress.doing, "dim"))
            spinner = self._spinners.get(progress.step)
            if spinner is None:
                spinner = self._spinners[progress.step] = Spinner("dots", text=label, style="cyan")
            else:
                spinner.update(text=label)
            rows.append(spinner)
        return Group(*rows)


QUIET_ROWS = 20  # `-q` lists at most this many steps that did not succeed


def render_summary(plan: Plan, run_id: str, outcome: RunOutcome, *, quiet: bool = False) -> RenderableType:
    """The end-of-run table; with `quiet`, one verdict line and only the steps that did not succeed
    (at most QUIET_ROWS): a 500-step table cost more than its steps' own bookkeeping."""
    if not quiet:
        return _summary_table(plan, run_id, outcome, list(outcome.steps.items()))
    counts: dict[str, int] = {}
    for state in outcome.steps.values():
        counts[state.status] = counts.get(state.status, 0) + 1
    line = Text.assemble(f"{plan.workflow} · run {run_id}: ",
                         (outcome.status, "bold " + STATUS_STYLE.get(outcome.status, "")),
                         f" (exit {outcome.exit_code}) · " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    shown = [(step_id, state) for step_id, state in outcome.steps.items() if state.status != "succeeded"]
    if not shown:
        return line
    table = _summary_table(plan, run_id, outcome, shown[:QUIET_ROWS])
    if len(shown) > QUIET_ROWS:
        table.caption = f"{table.caption} · {len(shown) - QUIET_ROWS} more: orchestr runs show {run_id}"
    return Group(line, table)


def _summary_table(plan: Plan, run_id: str, outcome: RunOutcome, rows: Sequence[tuple[str, StepState]]) -> Table:
    table = Table(title=f"{plan.workflow} · run {run_id}", title_justify="left")
    for column in ("step", "status", "attempts", "duration", "verification", "tokens"):
        table.add_column(column)
    for step_id, state in rows:
        table.add_row(step_id, *_summary_cells(state))
    usage = outcome.usage
    table.caption = f"{outcome.status} (exit {outcome.exit_code})" + (
        f" · tokens in {usage.input} out {usage.output} cached {usage.cached}" if usage.total else "")
    if outcome.status == "waiting":
        table.caption += f"\nwaiting for a person: `orchestr approvals show {run_id}`, then `orchestr approve {run_id}`"
    return table


def _summary_cells(state: StepState) -> tuple[Text, str, str, Text, str]:
    checks = state.verification
    if checks:
        failed = [c for c in checks if not c.passed]
        verification = Text(f"{len(checks) - len(failed)}/{len(checks)} passed", style="green" if not failed else "red")
        for check in failed:
            verification.append(f"\n✗ {check.check} {_short(check.target, 40)}: {_short(check.detail, 80)}", style="red")
    else:
        verification = Text(_short(state.reason or "-", 80), style="dim")
    tokens = f"{state.usage.input}/{state.usage.output}" if state.usage.total else "-"
    return (Text(state.status, style=STATUS_STYLE.get(state.status, "")), str(state.attempts),
            f"{state.duration:.2f}s" if state.duration else "-", verification, tokens)
