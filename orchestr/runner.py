"""`orchestr run`: inputs, lock, record, resume, sinks and the engine, put together."""

from __future__ import annotations

import os
import secrets
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from orchestr.dotenv import read_dotenv
from orchestr.engine import Engine, EngineConfig, RunOutcome, StepState
from orchestr.errors import UsageError, did_you_mean
from orchestr.events import EventBus, EventSink, JsonLinesSink, LogSink, Redactor, parse_iso
from orchestr.models import InputSpec
from orchestr.plan import Plan, StepId
from orchestr.project import Project
from orchestr.prune import remove_work_folders, work_folder
from orchestr.steps.base import StepRunner
from orchestr.store import Lock, Store, open_store

PROVIDER_KEY_VARS = ("ANTHROPIC_API_KEY", "OPENAI_API_KEY")
DEFAULT_MAX_PARALLEL = 8


@dataclass(frozen=True)
class RunRequest:
    inputs: Sequence[str] = ()
    max_parallel: int | None = None
    events_file: Path | None = None
    junit_file: Path | None = None
    resume: str | None = None
    trigger: str = "manual"
    slot: str | None = None
    record: Path | None = None
    replay: Path | None = None
    attach: Sequence[Path] = ()
    allow: Sequence[str] = ()
    queue: bool = False  # wait for the workflow's lock instead of exiting busy (overlap: queue)
    deadline: float | None = None  # seconds; stop the run after it (scheduled runs)
    only_if_waiting: bool = False  # resume only a run still `waiting` once the lock is ours (approve, tick)
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    say: Callable[[str], None] = field(default=lambda line: _say_on_stderr(line))  # notices (a swept leftover)
    control: RunControl | None = None  # how a signal handler stops this run


class RunControl:
    """Stops a run from a signal handler: any number of calls, before or after the engine exists,
    end in one orderly stop (the engine's own; its children get SIGTERM, then SIGKILL after the grace)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engine: Engine | None = None
        self.reason: str | None = None

    def attach(self, engine: Engine) -> None:
        with self._lock:
            self._engine = engine
            reason = self.reason
        if reason is not None:
            engine.stop(reason)

    @property
    def attached(self) -> bool:
        """Has a run's engine been handed over (a drainer between slots still has the last one)?"""
        with self._lock:
            return self._engine is not None

    def stop(self, reason: str = "cancelled") -> bool:
        """Ask once; True the first time. Never blocks (a signal handler calls it)."""
        with self._lock:
            if self.reason is not None:
                return False
            self.reason = reason
            engine = self._engine
        if engine is not None:
            threading.Thread(target=engine.stop, args=(reason,), name="orchestr-stop", daemon=True).start()
        return True


@dataclass(frozen=True)
class RunResult:
    run_id: str
    outcome: RunOutcome
    resumed: bool


def new_run_id(now: datetime) -> str:
    return f"{now.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def parse_inputs(specs: Mapping[str, InputSpec], raw: Sequence[str]) -> dict[str, object]:
    """`-i key=value` pairs, typed and checked against the workflow's inputs."""
    values: dict[str, object] = {}
    problems: list[str] = []
    for item in raw:
        key, sep, text = item.partition("=")
        if not sep:
            problems.append(f"-i {item!r}: write key=value")
        elif key not in specs:
            suggestion = did_you_mean(key, set(specs))
            problems.append(f"unknown input '{key}'" + (f"; {suggestion}" if suggestion else "")
                            + f" (inputs: {', '.join(specs) or 'none'})")
        else:
            try:
                values[key] = _typed(specs[key], text)
            except ValueError as exc:
                problems.append(f"input '{key}': {exc}")
    for name, spec in specs.items():
        if name not in values:
            if spec.default is not None:
                values[name] = spec.default
            elif spec.required:
                problems.append(f"missing required input '{name}': pass -i {name}=VALUE")
            else:
                values[name] = None
    if problems:
        raise UsageError("; ".join(problems))
    return values


def _typed(spec: InputSpec, text: str) -> object:
    value: object = text
    if spec.type == "integer":
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    elif spec.type == "number":
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    elif spec.type == "boolean":
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"expected true or false, got {text!r}")
        value = text.lower() in ("true", "1", "yes")
    if spec.enum is not None and value not in spec.enum:
        raise ValueError(f"{text!r} is not one of {', '.join(map(str, spec.enum))}")
    return value


def project_secret_names(project: Project) -> set[str]:
    """The secrets every run of the project redacts: orchestr.yaml's `secrets:`, provider keys
    (the usual two and each provider's `api_key_env`) and each MCP server's `env_from`."""
    names = {*project.config.secrets, *PROVIDER_KEY_VARS}
    names.update(p.api_key_env for p in project.config.providers.values() if p.api_key_env)
    names.update(n for server in project.config.mcp_servers.values() for n in server.env_from)
    names.update(read_dotenv(project.root))  # .env holds API keys: every value in it is a secret
    return names


def secret_values(project: Project, plan: Plan | None, env: Mapping[str, str]) -> list[str]:
    names = project_secret_names(project) | set(plan.secrets if plan is not None else ())
    return [env[n] for n in names if env.get(n)]


def runners_for(plan: Plan, *, record: Path | None = None, replay: Path | None = None,
                attach: Sequence[Path] = (), allow: Sequence[str] = (),
                env: Mapping[str, str] | None = None) -> dict[str, StepRunner]:
    """The step runners a plan needs, checked before anything runs (keys, servers: exit 2)."""
    from orchestr.steps.shell import ShellRunner

    runners: dict[str, StepRunner] = {"shell": ShellRunner()}
    if any(step.kind == "agent" for step in plan.steps.values()):
        from orchestr.steps.agent import build_agent_runner

        runners["agent"] = build_agent_runner(plan, record=record, replay=replay, attach=list(attach),
                                              allow=list(allow), env=env)
    return runners


def close_runners(runners: Mapping[str, StepRunner]) -> None:
    for runner in runners.values():
        close = getattr(runner, "close", None)
        if close is not None:
            close()


def schedule_deadline(plan: Plan) -> float | None:
    schedule = plan.spec.schedule
    return schedule.deadline.total_seconds() if schedule and schedule.deadline else None


class StoreSink:
    def __init__(self, store: Store) -> None:
        self.store = store

    def emit(self, event: object) -> None:
        from orchestr.events import Event

        assert isinstance(event, Event)
        self.store.append_event(event)


def _prior(store: Store, run_id: str) -> dict[StepId, StepState]:
    """What a resumed run keeps: verified steps with their outputs; the rest run again."""
    prior: dict[StepId, StepState] = {}
    for row in store.steps(run_id):
        kept = row["status"] == "succeeded"
        prior[StepId(row["step_id"])] = StepState(
            status="succeeded" if kept else "pending",
            attempts=row["attempts"],
            outputs=row["outputs"] if kept else {},
            output=row["output"] if kept else None,
        )
    return prior


def execute(
    project: Project,
    plan: Plan,
    request: RunRequest,
    *,
    runners: Mapping[str, StepRunner],
    sinks: Sequence[EventSink] = (),
    log_sinks: Sequence[LogSink] = (),
    run_id: str | None = None,
    lock: Lock | None = None,
) -> RunResult:
    """One run. `lock`, when given, is the workflow's lock already held by the caller (a drainer)."""
    from orchestr.writable import check_folder

    store = open_store(project)
    try:
        check_folder("the runs folder", project.state_dir / "runs")
        return _execute(project, plan, request, store, runners, list(sinks), list(log_sinks), run_id, lock)
    finally:
        store.close()


def _execute(project: Project, plan: Plan, request: RunRequest, store: Store, runners: Mapping[str, StepRunner],
             sinks: list[EventSink], log_sinks: list[LogSink], run_id: str | None,
             held: Lock | None) -> RunResult:
    from orchestr.events import utc_now

    prior: dict[StepId, StepState] = {}
    slot = request.slot
    if request.resume:
        found = store.find_run(request.resume, workflow=plan.workflow)
        if found is None or found.workflow != plan.workflow:
            raise UsageError(f"no run '{request.resume}' of workflow '{plan.workflow}' to resume (see `orchestr runs`)")
        run_id, inputs, slot = found.id, found.inputs, found.slot
        if found.effective_status == "running":
            raise UsageError(f"run {found.id} is still running (pid {found.pid}); it cannot be resumed")
    else:
        run_id = run_id or new_run_id(utc_now())
        inputs = parse_inputs(plan.spec.inputs, request.inputs)
    redactor = Redactor(secret_values(project, plan, request.env))
    lock = held or store.lock(plan.workflow)
    if held is None:
        lock.acquire(run_id, wait=request.queue)
    else:
        lock.name_holder(run_id)
    _sweep(project, plan.workflow, request)
    events_sink = JsonLinesSink(request.events_file) if request.events_file else None
    from orchestr.observability.output import RunOutputSink, output_path
    from orchestr.observability.telemetry import telemetry_sinks

    output_sink = RunOutputSink(output_path(project.state_dir, run_id))
    work_dir = work_folder(project.state_dir, run_id)
    try:
        _check_not_waiting(store, plan.workflow, run_id, request)
        if request.resume:
            prior = _prior(store, run_id)
            store.reopen_run(run_id)
        else:
            store.create_run(run_id=run_id, workflow=plan.workflow, trigger=request.trigger,
                             inputs=redactor.value(inputs),  # type: ignore[arg-type]
                             options=_options(request), slot=slot)
        runners = {**runners, **_approval_runners(project, plan, store, run_id, fresh=not request.resume)}
        bus = EventBus(run=run_id, workflow=plan.workflow,
                       redactor=redactor,
                       sinks=[StoreSink(store), *([events_sink] if events_sink else []), *sinks,
                              *telemetry_sinks(plan, request.env)], log_sinks=[output_sink, *log_sinks])
        config = EngineConfig(run_id=run_id, root=project.root, work_dir=work_dir,
                              max_parallel=request.max_parallel or project.config.defaults.max_parallel or DEFAULT_MAX_PARALLEL,
                              base_env=request.env, slot=slot)
        engine = Engine(plan, config=config, bus=bus, recorder=store, runners=runners)
        if request.control is not None:
            request.control.attach(engine)
        with _deadline(engine, request.deadline):
            outcome = engine.run(inputs, prior=prior)
        store.finish_run(run_id, status=outcome.status, exit_code=outcome.exit_code,
                         error=_first_reason(outcome), tokens=outcome.usage.to_json())
        if slot and outcome.status != "waiting":  # a scheduled run's slot settles when the run finally ends
            store.settle_slot(plan.workflow, parse_iso(slot), outcome=slot_outcome(outcome.status), run_id=run_id,
                              detail=_first_reason(outcome))
    finally:
        output_sink.close()
        # Scratch files live only while their step runs (outputs are read into the record at
        # once): a resume needs nothing from here, so the folder goes whatever the outcome.
        remove_work_folders(project.state_dir, [run_id])
        if events_sink:
            events_sink.close()
        if held is None:
            lock.release()
    if request.junit_file:
        from orchestr.junit import write_junit

        write_junit(request.junit_file, plan, run_id, outcome)
    return RunResult(run_id, outcome, bool(request.resume))


def _sweep(project: Project, workflow: str, request: RunRequest) -> None:
    """With the workflow's lock held, no other run of it lives: stop what dead runs left running."""
    from orchestr.orphans import sweep_leftovers
    from orchestr.processes import kill_group

    sweep_leftovers(project.state_dir / "runs", workflow, say=request.say, kill=kill_group)


def _say_on_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _check_not_waiting(store: Store, workflow: str, run_id: str, request: RunRequest) -> None:
    """A run waiting for an approval holds no process, yet the workflow is busy until it ends.

    Checked once the workflow's lock is ours, so no other run can start or resume in between.
    """
    from orchestr.errors import Busy, NotWaiting

    if request.only_if_waiting:
        row = store.run(run_id)
        if row is None or row.status != "waiting":
            raise NotWaiting(f"run {run_id} is no longer waiting (now {row.effective_status if row else 'gone'}): "
                             "another process resumed it")
    others = [r for r in store.waiting_runs(workflow) if r.id != run_id]
    if others:
        raise Busy(f"workflow '{workflow}' is busy: run {others[0].id} is waiting for an approval "
                   f"(see `orchestr approvals show {others[0].id}`; approve or reject it first)")


def _approval_runners(project: Project, plan: Plan, store: Store, run_id: str, *, fresh: bool) -> dict[str, StepRunner]:
    if not any(step.kind == "approval" for step in plan.steps.values()):
        return {}
    from orchestr.approvals.files import snapshot_baseline
    from orchestr.approvals.records import ApprovalBook
    from orchestr.approvals.step import ApprovalRunner

    if fresh:  # what the `show` files held before this run, for `approvals show` to diff against
        snapshot_baseline(plan, project.root, project.state_dir / "runs" / run_id)
    return {"approval": ApprovalRunner(ApprovalBook(store))}


OUTCOME_BY_STATUS = {"succeeded": "ran", "failed": "failed", "unverified": "unverified", "cancelled": "failed",
                     "timed-out": "timed-out", "waiting": "waiting"}  # waiting: not an outcome, never settled


def slot_outcome(status: str) -> str:
    """The ledger's word for how a scheduled run ended."""
    return OUTCOME_BY_STATUS.get(status, "failed")


@contextmanager
def _deadline(engine: Engine, seconds: float | None) -> Iterator[None]:
    """Stop the run when the schedule's deadline passes, the same orderly way as a cancel."""
    if seconds is None:
        yield
        return
    timer = threading.Timer(seconds, engine.stop, kwargs={"reason": "deadline"})
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _options(request: RunRequest) -> dict[str, object]:
    return {
        "max_parallel": request.max_parallel,
        "attach": [str(p) for p in request.attach],
        "allow": list(request.allow),
        "replay": str(request.replay) if request.replay else None,
    }


def _first_reason(outcome: RunOutcome) -> str | None:
    for step_id, state in outcome.steps.items():
        if state.status in ("failed", "unverified", "cancelled"):
            return f"{step_id}: {state.reason}"
    return None
