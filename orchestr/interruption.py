"""When a call in flight must give up: at the step's deadline, or on cancel (Ctrl-C, SIGTERM, a
schedule's deadline).

Every blocking wait inside a step (a model reply, an MCP tool, a command, an HTTP request) is bounded
by the attempt's `Stop`: the waiting side gives up within POLL_SECONDS of either, raises
`Interrupted`, and aborts the call it waited for (cancels its task, closes its socket, kills its
process group), so nothing keeps running, or keeps the process alive, after the step ended.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass
from typing import Literal, TypeVar

POLL_SECONDS = 0.05
T = TypeVar("T")


class Interrupted(Exception):
    """A call given up: `timeout` at the step's deadline, `cancelled` on cancel."""

    def __init__(self, kind: Literal["timeout", "cancelled"], message: str) -> None:
        super().__init__(message)
        self.kind: Literal["timeout", "cancelled"] = kind


class WaitExpired(Exception):
    """A wait's own limit (not the step's) passed before the call finished."""


@dataclass(frozen=True)
class Stop:
    cancel: threading.Event
    deadline: float | None = None  # time.monotonic() at which the step times out
    timeout: float | None = None  # the step's timeout in seconds, for messages

    @classmethod
    def after(cls, cancel: threading.Event, timeout: float | None) -> Stop:
        """A Stop for an attempt that starts now."""
        return cls(cancel, None if timeout is None else time.monotonic() + timeout, timeout)

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def bound(self, seconds: float) -> float:
        """`seconds`, or less when the step's deadline comes first."""
        left = self.remaining()
        return seconds if left is None else min(seconds, left)

    def interrupted(self) -> Interrupted | None:
        if self.cancel.is_set():
            return Interrupted("cancelled", "cancelled")
        if self.deadline is not None and time.monotonic() >= self.deadline:
            return Interrupted("timeout", f"timed out after {self.timeout:g}s")
        return None

    def check(self) -> None:
        problem = self.interrupted()
        if problem is not None:
            raise problem

    def sleep(self, seconds: float) -> None:
        """Sleep, but raise Interrupted as soon as cancel is set or the deadline passes."""
        end = time.monotonic() + seconds
        while True:
            self.check()
            left = end - time.monotonic()
            if left <= 0:
                return
            self.cancel.wait(min(left, self.remaining() or left, POLL_SECONDS * 4))


NEVER = Stop(threading.Event())  # for callers with no step around them: nobody ever sets it


def wait_future(future: Future[T], stop: Stop, *, limit: float | None = None) -> T:
    """The future's result, or Interrupted (stop) / WaitExpired (`limit` seconds) first.

    The future is left as it is: the caller decides how to abort the work behind it.
    """
    end = None if limit is None else time.monotonic() + limit
    while True:
        stop.check()
        slice_ = POLL_SECONDS
        if end is not None:
            left = end - time.monotonic()
            if left <= 0:
                raise WaitExpired(f"no result within {limit:g}s")
            slice_ = min(slice_, left)
        done, _ = wait_futures([future], timeout=slice_)
        if done:
            return future.result()
