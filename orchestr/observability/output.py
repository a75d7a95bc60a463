"""A run's output lines, durable: `<state_dir>/runs/<run>/output.jsonl`, one JSON object a line.

The events table is the durable trace; the lines steps print live here, beside the run's work
files, so `orchestr logs RUN -f` can show them from another terminal (scheduled runs included).
Lines arrive redacted from the bus.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from orchestr.events import LogLine, iso, utc_now

OUTPUT_NAME = "output.jsonl"


def output_path(state_dir: Path, run_id: str) -> Path:
    return state_dir / "runs" / run_id / OUTPUT_NAME


class RunOutputSink:
    """A LogSink appending each line, flushed, so a reader in another process sees it at once."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def log(self, line: LogLine) -> None:
        record = {"ts": iso(utc_now()), "step": line.step, "attempt": line.attempt, "stream": line.stream,
                  "text": line.text}
        with self._lock:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


@dataclass(frozen=True)
class OutputLine:
    ts: str
    step: str
    attempt: int
    stream: str
    text: str


class OutputReader:
    """Reads the lines written since the last read; a line still being written waits for its newline."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0

    def new_lines(self) -> Iterator[OutputLine]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        self._offset += end
        for raw in data[:end].splitlines():
            try:
                item = json.loads(raw)
                yield OutputLine(str(item["ts"]), str(item["step"]), int(item["attempt"]), str(item["stream"]),
                                 str(item["text"]))
            except (ValueError, KeyError, TypeError):
                continue  # a torn or foreign line: skip it, never stop following
