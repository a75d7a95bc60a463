"""Which steps are running, since when, on which attempt, and what each waits on now.

Fed by events (step.started / step.finished), activity (a model call in progress, a tool) and
output lines; read by the live panel and the CI heartbeat. Times come from the caller's clock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from orchestr.events import Event


@dataclass(frozen=True)
class StepProgress:
    step: str
    attempt: int
    began: float
    doing: str
    last_seen: float  # the last output line or activity


class ProgressBoard:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._steps: dict[str, StepProgress] = {}
        self._lock = threading.Lock()

    def event(self, event: Event) -> None:
        if not event.step:
            return
        with self._lock:
            if event.event == "step.started":
                now = self.clock()
                doing = "running" if event.data.get("kind") == "shell" else "starting"
                self._steps[event.step] = StepProgress(event.step, event.attempt or 1, now, doing, now)
            elif event.event == "step.finished":
                self._steps.pop(event.step, None)
            elif event.event == "step.retry":
                self._update(event.step, event.attempt or 1, f"retrying in {event.data.get('wait_seconds')}s")
            elif event.event == "model.call" and not event.data.get("retry_in"):
                self._update(event.step, event.attempt or 1, f"turn {event.data.get('turn')}: model replied")

    def activity(self, step: str, attempt: int, doing: str) -> None:
        with self._lock:
            self._update(step, attempt, doing)

    def output(self, step: str) -> None:
        with self._lock:
            if step in self._steps:
                self._steps[step] = replace(self._steps[step], last_seen=self.clock())

    def _update(self, step: str, attempt: int, doing: str) -> None:
        if step in self._steps:
            self._steps[step] = replace(self._steps[step], attempt=attempt, doing=doing, last_seen=self.clock())

    def running(self) -> list[StepProgress]:
        with self._lock:
            return list(self._steps.values())


def elapsed(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"
