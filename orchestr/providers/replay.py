"""`--record FILE` and `--replay FILE`: model exchanges as JSON lines, matched by request content.

A request is keyed by a hash of its canonical JSON, so parallel steps replay correctly whatever
order they run in. Replay needs no network and no key, and fails clearly on a request that was
not recorded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from collections import defaultdict, deque
from pathlib import Path
from typing import Any

from orchestr.errors import UsageError
from orchestr.events import NO_SECRETS, Redactor
from orchestr.interruption import NEVER, Stop
from orchestr.providers.base import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    Provider,
    ProviderError,
    ToolCall,
)
from orchestr.steps.base import Usage

SUMMARY_CHARS = 200


def request_key(provider: str, request: ModelRequest) -> str:
    fields = dataclasses.asdict(request, dict_factory=_without_empty_images)
    canonical = json.dumps({"provider": provider, **fields}, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:24]


def _without_empty_images(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A tool result without images hashes as it did before results could carry them."""
    return {k: v for k, v in pairs if not (k == "images" and not v)}


def _response_json(response: ModelResponse) -> dict[str, Any]:
    return dataclasses.asdict(response)


def _response_from(data: dict[str, Any]) -> ModelResponse:
    return ModelResponse(
        text=data.get("text", ""),
        tool_calls=tuple(ToolCall(c["id"], c["name"], c["args"]) for c in data.get("tool_calls", [])),
        usage=Usage(**data.get("usage", {})),
        stop_reason=data.get("stop_reason", ""),
        structured=data.get("structured"),
    )


class RecordingProvider:
    """Appends each exchange to the file, secrets redacted as in events: the key is a hash of the
    unredacted request, so replay still matches; a redacted answer replays as `***`."""

    def __init__(self, inner: Provider, path: Path, lock: threading.Lock, *, redactor: Redactor = NO_SECRETS) -> None:
        self.inner = inner
        self.name = inner.name
        self.path = path
        self._lock = lock
        self._redactor = redactor

    def complete(self, request: ModelRequest, *, stop: Stop = NEVER) -> ModelResponse:
        response = self.inner.complete(request, stop=stop)
        line = {"key": request_key(self.name, request), "provider": self.name, "model": request.model,
                # redacted before it is cut short, so no secret is left half hidden
                "last_message": self._redactor.text(_summary(request))[:SUMMARY_CHARS],
                "response": self._redactor.value(_response_json(response))}
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(line, sort_keys=True) + "\n")
        return response


def _summary(request: ModelRequest) -> str:
    last = request.messages[-1] if request.messages else None
    if last is None:
        return ""
    if isinstance(last, AssistantMessage):
        return last.text
    return json.dumps(dataclasses.asdict(last))


class ReplayBook:
    """Every recorded exchange of a file, by key; shared by all steps of a run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._answers: dict[str, deque[ModelResponse]] = defaultdict(deque)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UsageError(f"--replay {path}: cannot read: {exc.strerror}") from None
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                self._answers[entry["key"]].append(_response_from(entry["response"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise UsageError(f"{path}:{number}:1: not a recorded exchange ({exc})") from None

    def answer(self, provider: str, request: ModelRequest) -> ModelResponse:
        key = request_key(provider, request)
        with self._lock:
            queue = self._answers.get(key)
            if queue:
                return queue.popleft() if len(queue) > 1 else queue[0]
        raise ProviderError(
            f"replay: no recorded exchange matches this {provider} request (key {key}) in {self.path}; "
            "the workflow, its context or a tool result changed since recording: record again with --record")


class ReplayProvider:
    def __init__(self, name: str, book: ReplayBook) -> None:
        self.name = name
        self._book = book

    def complete(self, request: ModelRequest, *, stop: Stop = NEVER) -> ModelResponse:
        stop.check()
        return self._book.answer(self.name, request)
