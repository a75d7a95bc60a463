"""What the engine hands a step runner, and what it gets back."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

from orchestr.events import EventBus
from orchestr.plan import PlannedStep
from orchestr.processes import ProcessRegistry

ActionStatus = Literal["ok", "error", "timeout", "cancelled", "waiting"]  # waiting: an approval was asked


@dataclass(frozen=True)
class Usage:
    input: int = 0
    output: int = 0
    cached: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(self.input + other.input, self.output + other.output, self.cached + other.cached)

    @property
    def total(self) -> int:
        return self.input + self.output

    def to_json(self) -> dict[str, int]:
        return {"input": self.input, "output": self.output, "cached": self.cached}


@dataclass(frozen=True)
class ToolCallRecord:
    tool: str
    args: Mapping[str, object]
    outcome: Literal["ok", "denied", "error"]
    duration_ms: float
    result_chars: int
    # What the model was told when the call was denied or failed (capped at MESSAGE_CHARS).
    message: str | None = None

    def to_json(self) -> dict[str, object]:
        record: dict[str, object] = {"tool": self.tool, "args": dict(self.args), "outcome": self.outcome,
                                     "duration_ms": round(self.duration_ms, 1), "result_chars": self.result_chars}
        if self.message is not None:
            record["message"] = self.message
        return record


MESSAGE_CHARS = 2000


@dataclass(frozen=True)
class CheckResult:
    check: str  # the check's kind
    target: str  # what it looked at, for humans
    passed: bool
    detail: str
    # The check itself is broken (its schema file is missing, its pattern or expression is invalid):
    # it can never pass, so another attempt is pointless.
    permanent: bool = False

    def to_json(self) -> dict[str, object]:
        return {"check": self.check, "target": self.target, "passed": self.passed, "detail": self.detail}


@dataclass
class ActionResult:
    status: ActionStatus
    exit_code: int | None = None
    error: str | None = None
    stdout_tail: str = ""
    stderr_tail: str = ""
    outputs: dict[str, object] = field(default_factory=dict)
    output: object = None
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    verification: list[CheckResult] | None = None  # set by runners that verify themselves
    # Another attempt cannot help (a provider's 400/401/403/404, an expression that cannot be
    # evaluated, a missing prompt file): the engine does not retry it, whatever `retry.on` says.
    permanent: bool = False


Verifier = Callable[[ActionResult], list[CheckResult]]


@dataclass(frozen=True)
class Attempt:
    """Everything one attempt of one step may use."""

    run_id: str
    workflow: str
    step: PlannedStep
    number: int
    root: Path
    work_dir: Path
    env: Mapping[str, str]
    scope: Mapping[str, object]
    bus: EventBus
    cancel: threading.Event
    processes: ProcessRegistry
    timeout: float | None
    verify: Verifier


class StepRunner(Protocol):
    def run(self, attempt: Attempt) -> ActionResult: ...
