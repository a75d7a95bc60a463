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
from typing import Literal, Protocol, TextIO, runtime_checkable

EventKind = Literal[
    "run.started",
    "step.started",
    "model.call",
    "tool.call",
    "tool.log",
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


@runtime_checkable
class ActivitySink(Protocol):
    """What a running step waits on now (a model call, a tool): for live views only, never stored."""

    def activity(self, step: str, attempt: int, doing: str) -> None: ...


@runtime_checkable
class ContentSink(Protocol):
    """The prompt an agent attempt starts with, for exporters that send content when opted in; never stored."""

    def content(self, step: str, attempt: int, *, prompt: str, instructions: str) -> None: ...


MIN_LINE_SECRET = 8  # a line of a multi-line secret shorter than this is not hunted on its own


def _secret_parts(secret: str) -> set[str]:
    """A secret, and each line of a multi-line one (a PEM printed line by line), stripped."""
    parts = {secret}
    if "\n" in secret or "\r" in secret:
        parts.update(line.strip() for line in secret.splitlines() if len(line.strip()) >= MIN_LINE_SECRET)
    return parts


class Redactor:
    """The one redaction path: every sink (trace, events, records, logs, JUnit, recordings, outputs
    files) gets text through it. Replaces each secret value, and each line of a multi-line one, in
    strings nested anywhere, dict keys included, with ***.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        # Longest first, so a secret containing another is fully hidden. Even a short value is
        # redacted: a garbled trace is better than a leaked secret.
        parts = {part for s in secrets if s for part in _secret_parts(s)}
        self._values = sorted(parts, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._values)

    def text(self, value: str) -> str:
        for secret in self._values:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value

    def optional(self, value: str | None) -> str | None:
        return None if value is None else self.text(value)

    def value(self, value: object) -> object:
        if not self._values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {self.value(k): self.value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value


NO_SECRETS = Redactor(())


class EventBus:
    """Stamps, redacts and fans events out to sinks; safe to call from step threads."""

    def __init__(self, *, run: str, workflow: str, redactor: Redactor, sinks: Iterable[EventSink] = (),
                 log_sinks: Iterable[LogSink] = ()) -> None:
        self.run = run
        self.workflow = workflow
        self.redactor = redactor
        self._sinks = list(sinks)
        self._log_sinks = list(log_sinks)
        both = {id(s): s for s in (*self._sinks, *self._log_sinks) if isinstance(s, ActivitySink)}
        self._activity_sinks: list[ActivitySink] = list(both.values())
        self._content_sinks = [s for s in self._sinks if isinstance(s, ContentSink)]
        self._lock = threading.Lock()

    def emit(self, kind: EventKind, /, *, step: str | None = None, attempt: int | None = None, **data: object) -> Event:
        clean = self.redactor.value(data)
        assert isinstance(clean, dict)
        event = Event(utc_now(), self.run, self.workflow, kind, step, attempt, clean)
        with self._lock:
            for sink in self._sinks:
                sink.emit(event)
        return event

    def activity(self, step: str, attempt: int, doing: str) -> None:
        if self._activity_sinks:
            text = self.redactor.text(doing)
            for sink in self._activity_sinks:
                sink.activity(step, attempt, text)

    def content(self, step: str, attempt: int, *, prompt: str, instructions: str) -> None:
        for sink in self._content_sinks:
            sink.content(step, attempt, prompt=self.redactor.text(prompt), instructions=self.redactor.text(instructions))

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
