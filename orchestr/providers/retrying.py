"""The one retry layer for model calls: exponential backoff with jitter, honouring retry-after.

The SDKs' own retries are switched off (max_retries=0) so attempts never multiply. Only transient
faults are retried (ProviderError.retryable: 429, 5xx, 529, dropped connections, malformed replies);
400/401/403/404 fail at once. A provider's retry-after is capped at MAX_RETRY_AFTER_SECONDS, and a
wait that would outlive the step's deadline is not taken: the call fails now with the provider's
message. Every wait ends early on cancel.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    wait_exponential_jitter,
)

from orchestr.interruption import NEVER, Stop
from orchestr.providers.base import ModelRequest, ModelResponse, Provider, ProviderError

MAX_RETRY_AFTER_SECONDS = 60.0
REFUSED_ATTEMPTS = 3  # a refused connection: a server starting up gets a moment, a stopped one fails fast
REFUSED_WAIT_SECONDS = 0.5


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


@dataclass(frozen=True)
class CallTiming:
    """One call to the provider behind the retry layer: its number (1 = first) and start (monotonic)."""

    number: int
    started: float

    @property
    def duration_ms(self) -> float:
        return round((time.monotonic() - self.started) * 1000, 1)


RetryHook = Callable[[ProviderError, int, float, float], None]  # (error, call number, wait s, that call's ms)


def _stop(attempts: int) -> Callable[[RetryCallState], bool]:
    def stop(state: RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        refused = isinstance(exc, ProviderError) and exc.refused
        return state.attempt_number >= (min(attempts, REFUSED_ATTEMPTS) if refused else attempts)

    return stop


class RetryingProvider:
    """One instance serves one attempt's calls, one after another; `last_call` is the latest call."""

    def __init__(self, inner: Provider, *, attempts: int = 6, initial: float = 1.0, maximum: float = 30.0,
                 on_retry: RetryHook | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.attempts = attempts
        self._backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)
        self._on_retry = on_retry
        self.last_call: CallTiming | None = None

    def _wait(self, state: RetryCallState, stop: Stop) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, ProviderError) and exc.refused:
            return REFUSED_WAIT_SECONDS
        hinted = exc.retry_after if isinstance(exc, ProviderError) else None
        seconds = min(hinted, MAX_RETRY_AFTER_SECONDS) if hinted is not None else float(self._backoff(state))
        left = stop.remaining()
        if left is not None and seconds >= left and isinstance(exc, ProviderError):
            raise ProviderError(f"{exc} (not retried: waiting {seconds:g}s would pass the step's timeout of "
                                f"{stop.timeout:g}s)", status=exc.status) from None
        return seconds

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if self._on_retry is not None and isinstance(exc, ProviderError):
            took = self.last_call.duration_ms if self.last_call is not None else 0.0
            self._on_retry(exc, state.attempt_number, state.next_action.sleep if state.next_action else 0.0, took)

    def _one_call(self, request: ModelRequest, stop: Stop, numbers: list[int]) -> ModelResponse:
        numbers.append(len(numbers) + 1)
        self.last_call = CallTiming(numbers[-1], time.monotonic())
        return self.inner.complete(request, stop=stop)

    def complete(self, request: ModelRequest, *, stop: Stop = NEVER) -> ModelResponse:
        retrying = Retrying(stop=_stop(self.attempts), wait=lambda state: self._wait(state, stop),
                            sleep=stop.sleep, retry=retry_if_exception(_retryable), before_sleep=self._before_sleep,
                            reraise=True)
        numbers: list[int] = []
        try:
            response: ModelResponse = retrying(lambda: self._one_call(request, stop, numbers))
        except ProviderError as exc:
            if exc.refused:  # permanent now: the step's own retries would only knock again
                raise ProviderError(f"{exc} (gave up after {min(self.attempts, REFUSED_ATTEMPTS)} attempts)",
                                    refused=True) from None
            if exc.retryable:
                raise ProviderError(f"{exc} (gave up after {self.attempts} attempts)", status=exc.status) from None
            raise
        return response
