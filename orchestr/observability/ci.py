"""Traces for logs that are not terminals: a heartbeat for long steps, and GitHub Actions' own markup.

CiTrace is the plain trace plus, every `heartbeat` seconds, a line for each step that has printed
nothing since: how long it has run and what it waits on. GitHubTrace (GITHUB_ACTIONS=true) puts
each step's lines in a `::group::` when it finishes (parallel steps would interleave open
groups), and marks a failed or unverified step with `::error file=...,line=...::` at the step's
line in its workflow file, so it shows on the run's summary page.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.text import Text

from orchestr.events import Event, LogLine
from orchestr.observability.progress import ProgressBoard, elapsed
from orchestr.trace import STATUS_MARK, PlainTrace, describe

DEFAULT_HEARTBEAT_SECONDS = 30.0


class CiTrace(PlainTrace):
    def __init__(self, console: Console, *, verbose: bool = False, quiet: bool = False,
                 heartbeat: float | None = DEFAULT_HEARTBEAT_SECONDS) -> None:
        super().__init__(console, verbose=verbose, quiet=quiet)
        self.board = ProgressBoard(time.monotonic)
        self.heartbeat = heartbeat
        self._stop: threading.Event | None = None

    def emit(self, event: Event) -> None:
        self.board.event(event)
        if event.event == "run.started":
            self._start_beating()
        super().emit(event)
        if event.event == "run.finished" and self._stop is not None:
            self._stop.set()
            self._stop = None

    def activity(self, step: str, attempt: int, doing: str) -> None:
        self.board.activity(step, attempt, doing)

    def log(self, line: LogLine) -> None:
        if self.verbose:
            self.board.output(line.step)
        super().log(line)

    def _start_beating(self) -> None:
        if self.heartbeat is None or self.quiet or self._stop is not None:
            return
        stop = self._stop = threading.Event()
        threading.Thread(target=self._beat, args=(stop, self.heartbeat), daemon=True, name="heartbeat").start()

    def _beat(self, stop: threading.Event, every: float) -> None:
        while not stop.wait(every):
            now = time.monotonic()
            for progress in self.board.running():
                if now - progress.last_seen >= every * 0.999:
                    self.board.output(progress.step)  # the next line after another quiet period
                    self.beat_line(Text.assemble(("… ", "dim"), (progress.step, "bold"),
                                                 f" still running after {elapsed(now - progress.began)}"
                                                 f" (attempt {progress.attempt}: {progress.doing})"))

    def beat_line(self, text: Text) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z"
        self._print(Text.assemble((stamp + " ", "dim"), text))


def step_lines(path: Path) -> dict[str, int]:
    """Each step id's line in its workflow file (the `id:` that names it), for annotations."""
    found: dict[str, int] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return found
    for number, line in enumerate(text.splitlines(), 1):
        for match in re.finditer(r"\bid:\s*[\"']?([A-Za-z0-9_.-]+)", line):
            found.setdefault(match.group(1), number)
    return found


def _escape_data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


class GitHubTrace(CiTrace):
    def __init__(self, console: Console, *, file: str, lines: Mapping[str, int], verbose: bool = False,
                 heartbeat: float | None = DEFAULT_HEARTBEAT_SECONDS) -> None:
        super().__init__(console, verbose=verbose, heartbeat=heartbeat)
        self.file = file
        self.lines = lines
        self._held: dict[str, list[Text]] = {}

    def emit(self, event: Event) -> None:
        step = event.step
        if step is not None and (event.event == "step.started" or step in self._held):
            self.board.event(event)
            self._held.setdefault(step, [])
            line = describe(event)
            if line is not None:
                self._held[step].append(Text.assemble((_stamp(event) + " ", "dim"), line))
            if event.event == "step.finished":
                self._close_group(event)
            return
        super().emit(event)
        if event.event == "step.finished" and step is not None:
            self._annotate(event)

    def log(self, line: LogLine) -> None:
        self.board.output(line.step)
        held = self._held.get(line.step)
        if held is None:
            super().log(line)
            return
        held.append(Text.assemble(("  │ ", "dim"), line.text))  # collapsed in a group: always shown

    def _close_group(self, event: Event) -> None:
        held = self._held.pop(event.step or "", [])
        status = str(event.data.get("status"))
        title = f"{STATUS_MARK.get(status, '?')} {event.step} {status} in {event.data.get('duration_ms')}ms"
        with self._lock:
            self.console.out(f"::group::{_escape_data(title)}", highlight=False)
            for text in held:
                self.console.print(text, soft_wrap=True, highlight=False)
            self.console.out("::endgroup::", highlight=False)
        self._annotate(event)

    def _annotate(self, event: Event) -> None:
        status = str(event.data.get("status"))
        if status not in ("failed", "unverified"):
            return
        step = event.step or ""
        where = f"file={_escape_property(self.file)}"
        if step in self.lines:
            where += f",line={self.lines[step]}"
        title = _escape_property(f"step {step} {status}")
        message = _escape_data(str(event.data.get("reason") or status))
        with self._lock:
            self.console.out(f"::error {where},title={title}::{message}", highlight=False)


def _stamp(event: Event) -> str:
    return event.ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
