"""Runs a Plan: ready steps in parallel, retries with backoff, timeouts, verification, records.

The engine knows step runners, the store and event sinks only through their protocols.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import threading
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal, Protocol

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_result,
    stop_after_attempt,
    wait_exponential_jitter,
)

from orchestr.errors import ExitCode, OrchestrError
from orchestr.events import EventBus, iso, utc_now
from orchestr.expressions import (
    ExpressionError,
    condition_source,
    evaluate,
    render_text,
    status_calls,
    truthy,
)
from orchestr.orphans import LEDGER_NAME, Ledger
from orchestr.plan import Plan, PlannedStep, StepId
from orchestr.processes import ProcessRegistry
from orchestr.readiness import ReadyQueue, UpstreamIndex
from orchestr.steps.base import ActionResult, Attempt, CheckResult, StepRunner, Usage
from orchestr.verify import CheckContext, run_checks

# `waiting`: an approval step asked a person and the run stops there, to be resumed after the
# decision (docs/approvals.md). It is not terminal: its dependents stay pending.
StepStatus = Literal["pending", "running", "succeeded", "failed", "unverified", "skipped", "cancelled", "waiting"]
AttemptKind = Literal["succeeded", "unverified", "error", "timeout", "cancelled", "waiting"]
TERMINAL = ("succeeded", "failed", "unverified", "skipped", "cancelled")
HEARTBEAT_SECONDS = 10.0


class RunRecorder(Protocol):
    """The part of the store the engine writes to."""

    def heartbeat(self, run_id: str) -> None: ...

    def save_step(self, run_id: str, step_id: str, *, status: str, attempts: int, started_at: str | None,
                  outputs: Mapping[str, object], output: object, reason: str | None,
                  tokens: Mapping[str, int]) -> None: ...

    def save_attempt(self, run_id: str, step_id: str, attempt: int, **fields: object) -> None: ...


@dataclass
class StepState:
    status: StepStatus = "pending"
    attempts: int = 0
    reason: str | None = None
    outputs: dict[str, object] = field(default_factory=dict)
    output: object = None
    started_at: datetime | None = None
    duration: float = 0.0
    verification: list[CheckResult] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)

    def scope(self) -> dict[str, object]:
        return {"outputs": self.outputs, "output": self.output, "status": self.status}


class StepScopes(Mapping[str, object]):
    """`steps` in an expression's scope: a step's view is built when an expression reads it.

    Building every step's view for every evaluation made a run of n conditional steps O(n^2).
    """

    def __init__(self, states: Mapping[StepId, StepState], own: tuple[StepId, object] | None = None) -> None:
        self._states = states
        self._own = own  # a step's own view while its checks run (outputs of the attempt just made)

    def __getitem__(self, key: str) -> object:
        if self._own is not None and key == self._own[0]:
            return self._own[1]
        return self._states[StepId(key)].scope()

    def with_own(self, step: StepId, view: object) -> StepScopes:
        """The same view with `step` answered by `view`: O(1), where copying it was O(steps) per check."""
        return StepScopes(self._states, (step, view))

    def __iter__(self) -> Iterator[str]:
        return iter(self._states)

    def __len__(self) -> int:
        return len(self._states)


@dataclass(frozen=True)
class AttemptOutcome:
    kind: AttemptKind
    result: ActionResult
    checks: list[CheckResult]
    number: int


@dataclass(frozen=True)
class RunOutcome:
    status: Literal["succeeded", "failed", "unverified", "cancelled", "timed-out", "waiting"]
    exit_code: int
    steps: Mapping[StepId, StepState]
    usage: Usage


@dataclass(frozen=True)
class EngineConfig:
    run_id: str
    root: Path
    work_dir: Path
    max_parallel: int = 8
    base_env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    slot: str | None = None  # a scheduled run's slot instant (ISO 8601 UTC, Z): ORCHESTR_SLOT


class _FutureFlag:
    """Completes a future once, from any thread."""

    def __init__(self, future: Future[None]) -> None:
        self._future = future
        self._lock = threading.Lock()

    def set(self) -> None:
        with self._lock:
            if not self._future.done():
                self._future.set_result(None)


class Engine:
    def __init__(self, plan: Plan, *, config: EngineConfig, bus: EventBus, recorder: RunRecorder,
                 runners: Mapping[str, StepRunner]) -> None:
        self.plan = plan
        self.config = config
        self.bus = bus
        self.recorder = recorder
        self.runners = runners
        self.cancel = threading.Event()
        self.cancel_reason: str | None = None  # "deadline" when a schedule's deadline stopped the run
        self.processes = ProcessRegistry(Ledger(config.work_dir / LEDGER_NAME, workflow=plan.workflow))
        self.states: dict[StepId, StepState] = {s: StepState() for s in plan.steps}
        self.inputs: dict[str, object] = {}
        self._workflow_env: dict[str, str] = {}
        self._futures: dict[Future[None], StepId] = {}
        self._wake_future: Future[None] = Future()  # completed by stop(): wakes the scheduling loop
        self._wake = _FutureFlag(self._wake_future)
        self._upstream = UpstreamIndex(plan, lambda s: self.states[s].status)
        self._ready: ReadyQueue | None = None
        self._started: set[StepId] = set()

    # --- the run ------------------------------------------------------------------------------

    def run(self, inputs: Mapping[str, object], *, prior: Mapping[StepId, StepState] | None = None) -> RunOutcome:
        self.inputs = dict(inputs)
        for step_id, state in (prior or {}).items():
            if step_id in self.states:
                self.states[step_id] = state
        self.bus.emit("run.started", inputs=self.inputs, resumed=bool(prior),
                      steps=[s for s in self.plan.steps], kept=[s for s, st in (prior or {}).items() if st.status in TERMINAL])
        stop_heartbeat = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(stop_heartbeat,), daemon=True)
        beat.start()
        try:
            self._workflow_env = self._render_workflow_env()
            self._schedule()
        finally:
            stop_heartbeat.set()
            self.processes.close()
        outcome = self._outcome()
        self.bus.emit("run.finished", status=outcome.status, exit_code=outcome.exit_code,
                      tokens=outcome.usage.to_json())
        return outcome

    def _heartbeat(self, stop: threading.Event) -> None:
        """Beat until the run ends; a failed beat (a full disk, the database away) waits for the next."""
        from orchestr.store.base import heartbeat_interval

        while not stop.wait(min(HEARTBEAT_SECONDS, heartbeat_interval())):
            try:
                self.recorder.heartbeat(self.config.run_id)
            except OrchestrError:
                continue

    def stop(self, reason: str = "cancelled") -> None:
        """Stop the run from any thread (a deadline timer, `orchestr cancel`): the same orderly stop as Ctrl-C."""
        if self.cancel.is_set():
            return
        self.cancel_reason = reason
        self.cancel.set()
        self._wake.set()
        self.processes.stop_all()

    def _stop(self) -> None:
        """Ctrl-C or SIGTERM: stop every child process group, mark what did not finish."""
        self.cancel.set()
        self.processes.stop_all()
        self._pool_wait()
        for step_id, state in self.states.items():
            if state.status in ("pending", "running", "waiting"):
                state.status, state.reason = "cancelled", self._cancel_text()
                self._save_step(step_id, state)

    def _cancel_text(self) -> str:
        return "the schedule's deadline passed" if self.cancel_reason == "deadline" else "the run was cancelled"

    def _pool_wait(self) -> None:
        pending = list(self._futures)
        while pending:
            try:
                wait(pending)
                return
            except KeyboardInterrupt:
                self.processes.stop_all()

    def _schedule(self) -> None:
        with ThreadPoolExecutor(max_workers=self.config.max_parallel, thread_name_prefix="step") as pool:
            try:
                while not self.cancel.is_set():
                    self._start_ready(pool)
                    if not self._futures:
                        return
                    done, _ = wait([*self._futures, self._wake_future], return_when=FIRST_COMPLETED)
                    for future in done:
                        if future is not self._wake_future:
                            del self._futures[future]
                            future.result()
                self._stop()
            except KeyboardInterrupt:
                # Inside the pool's block: its exit waits for steps, which must be stopped first.
                self._stop()

    def _start_ready(self, pool: ThreadPoolExecutor) -> None:
        """Start (or finish unrun) every step whose needs have finished, in plan order, up to max_parallel."""
        # A cancelled run starts nothing more, whatever a step's condition: it must stop within 5 s.
        if self.cancel.is_set():
            return
        if self._ready is None:  # built here, once a resumed run's kept steps are in
            self._ready = ReadyQueue(self.plan, lambda s: self.states[s].status)
        for step_id in [s for s in self._started if self.states[s].status in TERMINAL]:
            self._started.discard(step_id)
            self._ready.finished(step_id)
        while self._ready and len(self._futures) < self.config.max_parallel:
            step_id = self._ready.pop()
            step, state = self.plan.steps[step_id], self.states[step_id]
            verdict = self._condition(step)
            if verdict is not None:
                self._finish_without_running(step_id, *verdict)
                self._ready.finished(step_id)
                continue
            state.status = "running"
            self._started.add(step_id)
            self._futures[pool.submit(self._execute, step)] = step_id

    def _blocked_by(self, step: PlannedStep) -> str | None:
        """Why `success()` is false for a step whose needs have all finished, or None if it is true."""
        for need in step.needs:
            need_state = self.states[need]
            if need_state.status == "succeeded":
                continue
            if need_state.status == "failed" and self.plan.steps[need].spec.continue_on_error:
                continue
            if need_state.status == "skipped" and need_state.reason == "condition was false":
                return f"needs '{need}', which was skipped by its condition"
            return f"needs '{need}', which {_past(need_state.status)}"
        upstream = self._upstream.of(step.id)
        for found in (upstream.failed, upstream.cancelled):
            if found is not None:
                return f"upstream step '{found}' {_past(self.states[found].status)}"
        return None

    def _condition(self, step: PlannedStep) -> tuple[StepStatus, str] | None:
        """None when the step should run, else the status and reason it finishes with unrun.

        A condition that calls no status function means `success() and (condition)`.
        """
        source = condition_source(step.spec.if_) if step.spec.if_ is not None else None
        calls = status_calls(source) if source is not None else frozenset()
        if not calls:
            blocked = self._blocked_by(step)
            if blocked is not None:
                return "skipped", blocked
            if source is None:
                return None
        assert source is not None
        try:
            value = evaluate(source, {**self._scope(step), **self._status_functions(step)})
        except ExpressionError as exc:
            return "failed", f"if: {exc}"
        return None if truthy(value) else ("skipped", "condition was false")

    def _status_functions(self, step: PlannedStep) -> dict[str, object]:
        upstream = self._upstream.of(step.id)
        cancelled = self.cancel.is_set() or upstream.cancelled is not None
        return {
            "success": lambda: self._blocked_by(step) is None and not cancelled,
            "failure": lambda: upstream.failed is not None,
            "cancelled": lambda: cancelled,
            "always": lambda: True,
        }

    def _finish_without_running(self, step_id: StepId, status: StepStatus, reason: str) -> None:
        state = self.states[step_id]
        state.status, state.reason = status, self.bus.redactor.text(reason)
        self.bus.emit("step.finished", step=step_id, status=status, reason=state.reason, attempts=state.attempts, duration_ms=0)
        self._save_step(step_id, state)

    # --- one step -----------------------------------------------------------------------------

    def _execute(self, step: PlannedStep) -> None:
        state = self.states[step.id]
        first = state.attempts
        state.started_at = utc_now()
        began = time.monotonic()
        retrying = Retrying(
            stop=stop_after_attempt(step.retry.attempts),
            wait=wait_exponential_jitter(multiplier=step.retry.backoff.total_seconds(),
                                         max=step.retry.max_backoff.total_seconds(),
                                         jitter=step.retry.backoff.total_seconds() / 2),
            retry=retry_if_result(lambda o: self._should_retry(step, o)),
            sleep=self._sleep,
            before_sleep=lambda rs: self._announce_retry(step, rs),
            retry_error_callback=lambda rs: rs.outcome.result() if rs.outcome else None,
        )
        numbers = itertools.count(first + 1)
        outcome: AttemptOutcome = retrying(lambda: self._attempt(step, next(numbers)))
        state.duration = time.monotonic() - began
        self._settle(step, state, outcome)

    def _should_retry(self, step: PlannedStep, outcome: AttemptOutcome) -> bool:
        if self.cancel.is_set():
            return False
        # A permanent error (a wrong model name, an expression that cannot be evaluated, a check
        # whose own configuration is broken) fails the same way every time: one attempt.
        if outcome.kind == "waiting" or outcome.result.permanent or any(c.permanent and not c.passed for c in outcome.checks):
            return False
        mapped = {"error": "error", "timeout": "timeout", "unverified": "unverified"}.get(outcome.kind)
        return mapped is not None and mapped in step.retry.on

    def _sleep(self, seconds: float) -> None:
        if self.cancel.wait(seconds):
            raise KeyboardInterrupt

    def _announce_retry(self, step: PlannedStep, rs: RetryCallState) -> None:
        outcome = rs.outcome.result() if rs.outcome else None
        wait_s = rs.next_action.sleep if rs.next_action else 0.0
        reason = _reason(outcome) if outcome else "retrying"
        self.bus.emit("step.retry", step=step.id, attempt=outcome.number if outcome else None,
                      reason=reason, wait_seconds=round(wait_s, 3))

    def _attempt(self, step: PlannedStep, number: int) -> AttemptOutcome:
        state = self.states[step.id]
        state.attempts = number
        started = utc_now()
        # Recorded before it runs, so a crash mid-attempt still leaves the attempt in the record.
        self.recorder.save_attempt(self.config.run_id, step.id, number, status="running", started_at=iso(started))
        self._save_step(step.id, state)
        self.bus.emit("step.started", step=step.id, attempt=number, kind=step.kind)
        scope = self._scope(step)
        try:
            env = self._step_env(step, scope, number)
        except ExpressionError as exc:
            result = ActionResult("error", error=f"env: {exc}", permanent=True)
        else:
            attempt = Attempt(
                run_id=self.config.run_id, workflow=self.plan.workflow, step=step, number=number,
                root=self.config.root, work_dir=self.config.work_dir, env=env, scope=scope, bus=self.bus,
                cancel=self.cancel, processes=self.processes,
                timeout=step.timeout.total_seconds() if step.timeout else None,
                verify=lambda r: self._verify(step, number, r, scope, env),
            )
            result = self.runners[step.kind].run(attempt)
        checks = result.verification
        if checks is None:
            checks = self._verify(step, number, result, scope, env) if result.status == "ok" else []
        checks = self._redact(result, checks)
        outcome = AttemptOutcome(_classify(result, checks), result, checks, number)
        self.recorder.save_attempt(
            self.config.run_id, step.id, number, status=outcome.kind, started_at=iso(started),
            finished_at=iso(utc_now()), exit_code=result.exit_code, error=_reason(outcome) if outcome.kind != "succeeded" else None,
            stdout_tail=self.bus.redactor.text(result.stdout_tail), stderr_tail=self.bus.redactor.text(result.stderr_tail),
            verification=[c.to_json() for c in checks], tool_calls=self.bus.redactor.value([c.to_json() for c in result.tool_calls]),
            tokens=result.usage.to_json(),
        )
        state.usage = state.usage + result.usage
        return outcome

    def _redact(self, result: ActionResult, checks: list[CheckResult]) -> list[CheckResult]:
        """Secrets out of what becomes a reason (summary, records, JUnit, slot detail, status)."""
        redactor = self.bus.redactor
        result.error = redactor.optional(result.error)
        return [dataclasses.replace(c, target=redactor.text(c.target), detail=redactor.text(c.detail)) for c in checks]

    def _verify(self, step: PlannedStep, number: int, result: ActionResult, scope: Mapping[str, object],
                env: Mapping[str, str]) -> list[CheckResult]:
        steps = scope["steps"]
        assert isinstance(steps, StepScopes)
        own = {**scope, "steps": steps.with_own(step.id, {"outputs": result.outputs, "output": result.output,
                                                            "status": "running"})}
        checks = run_checks(step.spec.verify, result, CheckContext(self.config.root, own, env, self.processes))
        for check in checks:
            self.bus.emit("verify.result", step=step.id, attempt=number, check=check.check, target=check.target,
                          passed=check.passed, detail=check.detail)
        return checks

    def _settle(self, step: PlannedStep, state: StepState, outcome: AttemptOutcome) -> None:
        status: StepStatus = {"succeeded": "succeeded", "unverified": "unverified", "cancelled": "cancelled",
                              "waiting": "waiting"}.get(outcome.kind, "failed")  # type: ignore[assignment]
        reason = None if status == "succeeded" else _reason(outcome)
        if self.cancel.is_set() and status in ("succeeded", "cancelled", "waiting"):
            # The run was stopped while this step was in flight: whatever it returned, it did not
            # finish inside the run (a deadline's step is never `succeeded`).
            status, reason = "cancelled", self._cancel_text()
        state.status = status
        state.reason = reason
        state.outputs, state.output, state.verification = outcome.result.outputs, outcome.result.output, outcome.checks
        self.bus.emit("step.finished", step=step.id, attempt=outcome.number, status=status, reason=state.reason,
                      attempts=state.attempts, duration_ms=round(state.duration * 1000, 1),
                      tokens=state.usage.to_json())
        self._save_step(step.id, state)

    def _save_step(self, step_id: StepId, state: StepState) -> None:
        self.recorder.save_step(
            self.config.run_id, step_id, status=state.status, attempts=state.attempts,
            started_at=iso(state.started_at) if state.started_at else None,
            outputs=self.bus.redactor.value(state.outputs),  # type: ignore[arg-type]
            output=self.bus.redactor.value(state.output), reason=state.reason, tokens=state.usage.to_json(),
        )

    # --- scope and environment ----------------------------------------------------------------

    def _scope(self, step: PlannedStep | None) -> dict[str, object]:
        context_vars = step.context.vars if step is not None and step.context is not None else {}
        return {
            "inputs": self.inputs,
            "vars": context_vars,
            "env": {**self.config.base_env, **self._workflow_env},
            "steps": StepScopes(self.states),
        }

    def _render_workflow_env(self) -> dict[str, str]:
        scope = self._scope(None)
        return {k: render_text(v, scope) for k, v in self.plan.spec.env.items()}

    def _step_env(self, step: PlannedStep, scope: Mapping[str, object], number: int) -> dict[str, str]:
        env = {**self.config.base_env, **self._workflow_env}
        env.update({k: render_text(v, scope) for k, v in step.spec.env.items()})
        env.update({
            "ORCHESTR_RUN_ID": self.config.run_id, "ORCHESTR_WORKFLOW": self.plan.workflow,
            "ORCHESTR_STEP": step.id, "ORCHESTR_ATTEMPT": str(number),
            "ORCHESTR_PROJECT": str(self.config.root),
        })
        if self.config.slot is not None:
            env["ORCHESTR_SLOT"] = self.config.slot
        return env

    # --- the verdict --------------------------------------------------------------------------

    def _outcome(self) -> RunOutcome:
        states = self.states.values()
        usage = sum((s.usage for s in states), Usage())
        if self.cancel.is_set() and self.cancel_reason == "deadline":
            return RunOutcome("timed-out", ExitCode.FAILED, self.states, usage)
        if self.cancel.is_set():
            return RunOutcome("cancelled", ExitCode.CANCELLED, self.states, usage)
        if any(st.status == "waiting" for st in states):  # unfinished: the decision decides the verdict
            return RunOutcome("waiting", ExitCode.WAITING, self.states, usage)
        blocking = [
            (sid, st) for sid, st in self.states.items()
            if st.status in ("failed", "cancelled") and not self.plan.steps[sid].spec.continue_on_error
        ]
        if blocking:
            return RunOutcome("failed", ExitCode.FAILED, self.states, usage)
        if any(st.status == "unverified" for st in states):
            return RunOutcome("unverified", ExitCode.UNVERIFIED, self.states, usage)
        return RunOutcome("succeeded", ExitCode.OK, self.states, usage)


def _classify(result: ActionResult, checks: list[CheckResult]) -> AttemptKind:
    if result.status == "ok":
        return "succeeded" if all(c.passed for c in checks) else "unverified"
    return result.status


def _reason(outcome: AttemptOutcome) -> str:
    if outcome.kind == "unverified":
        failed = [c for c in outcome.checks if not c.passed]
        return "; ".join(f"{c.check} {c.target}: {c.detail}" for c in failed) or "verification failed"
    return outcome.result.error or outcome.kind


def _past(status: str) -> str:
    return {"failed": "failed", "unverified": "was not verified", "cancelled": "was cancelled",
            "skipped": "was skipped"}.get(status, status)
