"""Providers for one run's agent steps: created once per endpoint, wrapped per attempt."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path

from orchestr.events import NO_SECRETS, Redactor
from orchestr.models import ProjectConfig
from orchestr.plan import Plan
from orchestr.providers import check_keys, connect, endpoint, split_model
from orchestr.providers.base import Provider, ProviderError
from orchestr.providers.replay import RecordingProvider, ReplayBook, ReplayProvider
from orchestr.providers.retrying import RetryingProvider
from orchestr.steps.base import Attempt

HTTP_TIMEOUT_SECONDS = 300.0


class ProviderPool:
    def __init__(self, plan: Plan, config: ProjectConfig, env: Mapping[str, str], *, record: Path | None,
                 replay: Path | None, retry_initial: float = 1.0, redactor: Redactor = NO_SECRETS) -> None:
        self.config = config
        self.redactor = redactor
        self.env = env
        self.record = record
        self.book = ReplayBook(replay) if replay else None
        self.retry_initial = retry_initial
        if self.book is None:
            check_keys(plan.models, config, env)
        if record is not None:
            record.parent.mkdir(parents=True, exist_ok=True)
            record.write_text("")
        self._providers: dict[str, Provider] = {}
        self._lock = threading.Lock()
        self._record_lock = threading.Lock()

    def _inner(self, name: str) -> Provider:
        with self._lock:
            if name not in self._providers:
                if self.book is not None:
                    provider: Provider = ReplayProvider(name, self.book)
                else:
                    provider = connect(endpoint(name, self.config, self.env), timeout=HTTP_TIMEOUT_SECONDS)
                    if self.record is not None:
                        provider = RecordingProvider(provider, self.record, self._record_lock,
                                                     redactor=self.redactor)
                self._providers[name] = provider
            return self._providers[name]

    def close(self) -> None:
        with self._lock:
            for provider in self._providers.values():
                inner = getattr(provider, "inner", provider)
                close = getattr(inner, "close", None)
                if close is not None:
                    close()
            self._providers.clear()

    def get(self, model_ref: str, attempt: Attempt) -> Provider:
        """The endpoint's provider behind the one retry layer, tracing each retried failure."""
        name, _ = split_model(model_ref)

        def on_retry(exc: ProviderError, number: int, wait: float, took_ms: float) -> None:
            attempt.bus.emit("model.call", step=attempt.step.id, attempt=attempt.number, provider=name,
                             model=split_model(model_ref)[1], error=str(exc), retry_in=round(wait, 3),
                             tokens_in=0, tokens_out=0, tokens_cached=0, duration_ms=took_ms, retries=number - 1)
            attempt.bus.activity(attempt.step.id, attempt.number,
                                 f"model call {number} failed; retrying in {wait:.1f}s")

        return RetryingProvider(self._inner(name), on_retry=on_retry, initial=self.retry_initial)
