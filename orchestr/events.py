"""Run events: one type, a redacting bus, and sinks (JSON lines; the store and trace elsewhere).

The event names and fields are the stable contract in docs/events.md.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol, TextIO

EventKind = Literal[
    "run.started",
    "step.started",
    "model.call",
    "tool.call",
    "verify.result",
    "step.retry",
    "step.finished",
    "run.finished",
    "approval.requested",
    "approval.decided",
]
REDACTED = "***"


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: str) -> datetime:
    """The inverse of `iso` (and any ISO 8601 with `Z` or an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Event:
    ts: datetime
    run: str
    workflow: str
    event: EventKind
    step: str | None = None
    attempt: int | None = None
    data: Mapping[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        record: dict[str, object] = {"ts": iso(self.ts), "run": self.run, "workflow": self.workflow, "event": self.event}
        if self.step is not None:
            record["step"] = self.step
        if self.attempt is not None:
            record["attempt"] = self.attempt
        record.update(self.data)
        return record


@dataclass(frozen=True)
class LogLine:
    """A line a step printed: for the live trace only, kept as a tail in the record."""

    step: str
    attempt: int
    stream: Literal["stdout", "stderr"]
    text: str


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


class LogSink(Protocol):
    def log(self, line: LogLine) -> None: ...


class Redactor:
    """Replaces every secret value in strings (nested anywhere) with ***."""

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is fully hidden. Even a short value is
        # redacted: a garbled trace is better than a leaked secret.
        self._values = sorted({s for s in secrets if s}, key=len, reverse=True)

    def text(self, value: str) -> str:
        for secret in self._values:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def value(self, value: object) -> object:
        if not self._values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


class EventBus:
    """Stamps, redacts and fans events out to sinks; safe to call from step threads."""

    def __init__(self, *, run: str, workflow: str, redactor: Redactor, sinks: Iterable[EventSink] = (),
                 log_sinks: Iterable[LogSink] = ()) -> None:
        self.run = run
        self.workflow = workflow
        self.redactor = redactor
        self._sinks = list(sinks)
        self._log_sinks = list(log_sinks)
        self._lock = threading.Lock()

    def emit(self, kind: EventKind, /, *, step: str | None = None, attempt: int | None = None, **data: object) -> Event:
        clean = self.redactor.value(data)
        assert isinstance(clean, dict)
        event = Event(utc_now(), self.run, self.workflow, kind, step, attempt, clean)
        with self._lock:
            for sink in self._sinks:
                sink.emit(event)
        return event

    def log(self, line: LogLine) -> None:
        clean = LogLine(line.step, line.attempt, line.stream, self.redactor.text(line.text))
        with self._lock:
            for sink in self._log_sinks:
                sink.log(clean)


class JsonLinesSink:
    """`--events FILE`: one JSON object per line, flushed as it happens."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = path.open("a", encoding="utf-8")

    def emit(self, event: Event) -> None:
        self._file.write(json.dumps(event.to_json(), default=str) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class MemorySink:
    """Keeps events in memory (used by tests and the JUnit writer)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)
