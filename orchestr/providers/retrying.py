"""The one retry layer for model calls: exponential backoff with jitter, honouring retry-after.

The SDKs' own retries are switched off (max_retries=0) so attempts never multiply.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from orchestr.providers.base import ModelRequest, ModelResponse, Provider, ProviderError


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


class RetryingProvider:
    def __init__(self, inner: Provider, *, attempts: int = 6, initial: float = 1.0, maximum: float = 30.0,
                 cancel: threading.Event | None = None,
                 on_retry: Callable[[ProviderError, int, float], None] | None = None) -> None:
        self.inner = inner
        self.name = inner.name
        self.attempts = attempts
        self._backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)
        self._cancel = cancel or threading.Event()
        self._on_retry = on_retry

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        hinted = exc.retry_after if isinstance(exc, ProviderError) else None
        return hinted if hinted is not None else float(self._backoff(state))

    def _sleep(self, seconds: float) -> None:
        if self._cancel.wait(seconds):
            raise KeyboardInterrupt

    def _before_sleep(self, state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if self._on_retry is not None and isinstance(exc, ProviderError):
            self._on_retry(exc, state.attempt_number, state.next_action.sleep if state.next_action else 0.0)

    def complete(self, request: ModelRequest) -> ModelResponse:
        retrying = Retrying(stop=stop_after_attempt(self.attempts), wait=self._wait, sleep=self._sleep,
                            retry=retry_if_exception(_retryable), before_sleep=self._before_sleep, reraise=True)
        try:
            response: ModelResponse = retrying(self.inner.complete, request)
        except ProviderError as exc:
            if exc.retryable:
                raise ProviderError(f"{exc} (gave up after {self.attempts} attempts)", status=exc.status) from None
            raise
        return response
