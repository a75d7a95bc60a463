"""`orchestr logs RUN [-f]`: a run's trace (from the events table) and its steps' output lines.

Following polls the store and the run's output file until the run is no longer running (it
finished, or its process died), then reads once more so nothing written at the end is missed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from rich.text import Text

from orchestr.events import Event, parse_iso
from orchestr.observability.output import OutputLine, OutputReader, output_path
from orchestr.store import RunRow, Store
from orchestr.trace import describe

POLL_SECONDS = 0.25


def _stamp(ts: str) -> str:
    return parse_iso(ts).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def event_line(row: RunRow, record: dict[str, object]) -> Text | None:
    data = record["data"]
    assert isinstance(data, dict)
    step, attempt = record.get("step"), record.get("attempt")
    event = Event(parse_iso(str(record["ts"])), row.id, row.workflow, record["event"],  # type: ignore[arg-type]
                  str(step) if step is not None else None, int(str(attempt)) if attempt is not None else None, data)
    line = describe(event)
    return None if line is None else Text.assemble((_stamp(str(record["ts"])) + " ", "dim"), line)


def output_line(line: OutputLine) -> Text:
    style = "red" if line.stream == "stderr" else ""
    return Text.assemble((_stamp(line.ts) + " ", "dim"), ("  │ ", "dim"), (line.step, "bold"), ": ", (line.text, style))


@dataclass
class RunFollower:
    """New trace and output lines of one run, in time order within each read."""

    store: Store
    row: RunRow
    output: bool = True
    _seen: int = 0
    _reader: OutputReader | None = field(default=None)

    def __post_init__(self) -> None:
        self._reader = OutputReader(output_path(self.store.state_dir, self.row.id)) if self.output else None

    def read(self) -> list[Text]:
        timed: list[tuple[str, int, Text]] = []
        for record in self.store.events(self.row.id):
            if record["seq"] <= self._seen:
                continue
            self._seen = record["seq"]
            line = event_line(self.row, record)
            if line is not None:
                timed.append((str(record["ts"]), 0, line))
        if self._reader is not None:
            timed += [(o.ts, 1, output_line(o)) for o in self._reader.new_lines()]
        timed.sort(key=lambda item: (item[0], item[1]))
        return [text for _, _, text in timed]

    def follow(self, *, running: Callable[[], bool], sleep: Callable[[float], None] = time.sleep) -> Iterator[Text]:
        while True:
            alive = running()
            yield from self.read()
            if not alive:
                return
            sleep(POLL_SECONDS)
