"""Agent steps: the bounded tool loop with governed tools, structured output and verified completion.

The loop: ask the model; run the tools it calls (each checked against the step's effective
permissions, each traced); when it answers, enforce the output schema, then run the step's checks.
A failed check goes back to the model as a new turn, within bounds; the model's word never counts.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from orchestr.context import render_context
from orchestr.errors import ConfigurationError, UsageError
from orchestr.expressions import ExpressionError, render_text
from orchestr.governance import Governance
from orchestr.interruption import Interrupted, Stop
from orchestr.models import AgentStep, Budget
from orchestr.permissions import EffectivePermissions, PathDenied, resolve_in_root
from orchestr.plan import Plan, PlannedStep, StepId
from orchestr.providers.base import (
    AssistantMessage,
    Message,
    ModelRequest,
    ModelResponse,
    Provider,
    ProviderError,
    ToolCall,
    ToolResult,
    ToolResultsMessage,
    UserMessage,
)
from orchestr.steps.base import (
    MESSAGE_CHARS,
    ActionResult,
    Attempt,
    CheckResult,
    ToolCallRecord,
    Usage,
)
from orchestr.steps.grants import apply_grants, granted_tools
from orchestr.steps.providers import ProviderPool
from orchestr.steps.toolbox import LogSink, Toolbox, ToolServerError, check_server_env
from orchestr.tools.builtin import ServerLog
from orchestr.tools.builtin import ToolResult as ToolOutcome
from orchestr.tools.sandbox import Sandbox, find_sandbox
from orchestr.verify import schema_problem

MAX_OUTPUT_RETRIES = 2
MAX_VERIFY_FEEDBACK = 2
MAX_ATTACHMENT_BYTES = 64_000
MAX_PARALLEL_TOOLS = 8  # a turn's tool calls run at once, this many at a time


class RunBudget:
    """Tokens used by the whole run, shared by its agent steps."""

    def __init__(self, budget: Budget | None) -> None:
        self.limit = budget.max_tokens if budget else None
        self.used = 0
        self._lock = threading.Lock()

    def add(self, usage: Usage) -> int:
        with self._lock:
            self.used += usage.total
            return self.used


@dataclass
class Conversation:
    """The state of one attempt's loop."""

    messages: list[Message]
    usage: Usage = field(default_factory=Usage)
    calls: list[ToolCallRecord] = field(default_factory=list)
    output_retries: int = 0
    feedback_rounds: int = 0
    last_checks: list[CheckResult] = field(default_factory=list)  # of the latest answer, kept if turns run out


class AgentRunner:
    def __init__(self, *, pool: ProviderPool, toolbox: Toolbox, attachments: Sequence[Path], budget: RunBudget,
                 permissions: Mapping[StepId, EffectivePermissions], extra_tools: Sequence[str] = ()) -> None:
        self.pool = pool
        self.toolbox = toolbox
        self.attachments = attachments
        self.budget = budget
        self.permissions = permissions
        self.extra_tools = tuple(extra_tools)

    def close(self) -> None:
        self.toolbox.close()
        self.pool.close()

    def run(self, attempt: Attempt) -> ActionResult:
        step = attempt.step
        assert isinstance(step.spec, AgentStep) and step.agent is not None
        # Every wait of the attempt (model replies, tools, retry-after) ends at its deadline or on cancel.
        stop = Stop.after(attempt.cancel, attempt.timeout)
        try:
            first = self._first_message(attempt)
        except (ExpressionError, OSError, PathDenied) as exc:  # the same on every attempt
            return ActionResult("error", error=f"prompt: {exc}", permanent=True)
        attempt.bus.content(step.id, attempt.number, prompt=first, instructions=step.agent.spec.instructions.strip())
        provider = self.pool.get(step.agent.model, attempt)
        convo = Conversation([UserMessage(first)])
        try:
            return self._loop(attempt, provider, convo, stop)
        except Interrupted as exc:
            return self._result(exc.kind, convo, error=str(exc))
        except ProviderError as exc:
            return ActionResult("error", error=str(exc), usage=convo.usage, tool_calls=convo.calls,
                                permanent=exc.permanent)
        except ToolServerError as exc:
            return ActionResult("error", error=str(exc), usage=convo.usage, tool_calls=convo.calls)
        except KeyboardInterrupt:
            return ActionResult("cancelled", error="cancelled", usage=convo.usage, tool_calls=convo.calls)

    # --- the loop -----------------------------------------------------------------------------

    def _loop(self, attempt: Attempt, provider: Provider, convo: Conversation, stop: Stop) -> ActionResult:
        step = attempt.step
        assert step.agent is not None and isinstance(step.spec, AgentStep)
        permissions = self.permissions[step.id]
        tools = self.toolbox.definitions((*step.agent.tools, *self.extra_tools), permissions, stop=stop,
                                         log=_log_sink(attempt))
        base = ModelRequest(
            model=step.agent.model.partition(":")[2], context=_context_text(step, attempt.root),
            instructions=step.agent.spec.instructions.strip(), messages=(), tools=tools,
            output_schema=step.spec.output.schema_ if step.spec.output else None,
        )
        for turn in range(1, step.agent.max_turns + 1):
            stop.check()
            over = self._over_budget(step, convo)
            if over:
                return self._result("error", convo, error=over)
            response = self._call(attempt, provider, base, convo, turn, stop)
            if response.tool_calls:
                convo.messages.append(AssistantMessage(response.text, response.tool_calls))
                convo.messages.append(self._run_tools(attempt, permissions, response, convo, stop))
                continue
            done = self._answer(attempt, convo, response)
            if done is not None:
                return done
        return self._out_of_turns(step.agent.max_turns, convo)

    def _out_of_turns(self, max_turns: int, convo: Conversation) -> ActionResult:
        """max_turns: the record keeps the latest answer's checks, and the reason names those that failed."""
        failed = [c for c in convo.last_checks if not c.passed]
        why = f"max_turns ({max_turns}) reached without a verified answer"
        if failed:
            why += "; failing: " + "; ".join(f"{c.check} {c.target}: {c.detail}" for c in failed)
        result = self._result("error", convo, error=why)
        result.verification = list(convo.last_checks) if convo.last_checks else None
        return result

    def _call(self, attempt: Attempt, provider: Provider, base: ModelRequest, convo: Conversation,
              turn: int, stop: Stop) -> ModelResponse:
        request = ModelRequest(**{**base.__dict__, "messages": tuple(convo.messages)})
        assert attempt.step.agent is not None
        attempt.bus.activity(attempt.step.id, attempt.number,
                             f"turn {turn}/{attempt.step.agent.max_turns}: waiting on {provider.name}:{request.model}")
        began = time.monotonic()
        try:
            response = provider.complete(request, stop=stop)
        except (ProviderError, Interrupted) as exc:
            self._emit_model(attempt, provider, request, Usage(), began, turn, error=str(exc))
            raise
        convo.usage = convo.usage + response.usage
        self.budget.add(response.usage)
        self._emit_model(attempt, provider, request, response.usage, began, turn)
        return response

    def _emit_model(self, attempt: Attempt, provider: Provider, request: ModelRequest, usage: Usage, began: float,
                    turn: int, *, error: str | None = None) -> None:
        # Behind the retry layer the event is the last call's own: earlier failed calls were traced
        # (with their own durations) as they were retried.
        last = getattr(provider, "last_call", None)
        started, retries = (last.started, last.number - 1) if last is not None else (began, 0)
        data: dict[str, object] = {
            "provider": provider.name, "model": request.model, "turn": turn, "tokens_in": usage.input,
            "tokens_out": usage.output, "tokens_cached": usage.cached,
            "duration_ms": round((time.monotonic() - started) * 1000, 1), "retries": retries,
        }
        if error:
            data["error"] = error
        attempt.bus.emit("model.call", step=attempt.step.id, attempt=attempt.number, **data)

    def _over_budget(self, step: PlannedStep, convo: Conversation) -> str | None:
        assert step.agent is not None
        if step.agent.budget and convo.usage.total >= step.agent.budget.max_tokens:
            return f"budget exceeded: step used {convo.usage.total} of {step.agent.budget.max_tokens} tokens"
        if self.budget.limit is not None and self.budget.used >= self.budget.limit:
            return f"budget exceeded: run used {self.budget.used} of {self.budget.limit} tokens"
        return None

    def _run_tools(self, attempt: Attempt, permissions: EffectivePermissions, response: ModelResponse,
                   convo: Conversation, stop: Stop) -> ToolResultsMessage:
        """The turn's tool calls, at once when the model asked for several; recorded in its order."""
        calls = response.tool_calls
        attempt.bus.activity(attempt.step.id, attempt.number, "tool " + ", ".join(c.name for c in calls))
        log = _log_sink(attempt)
        if len(calls) == 1:
            done = [self._run_tool(attempt, permissions, calls[0], stop, log)]
        else:
            with ThreadPoolExecutor(min(len(calls), MAX_PARALLEL_TOOLS), thread_name_prefix="orchestr-tool") as pool:
                done = list(pool.map(lambda call: self._run_tool(attempt, permissions, call, stop, log), calls))
        convo.calls += [record for record, _, _ in done]
        interrupted = next((exc for _, _, exc in done if exc is not None), None)
        if interrupted is not None:
            raise interrupted
        stop.check()  # a tool cut short by the deadline (its own bound) ends the attempt too
        return ToolResultsMessage(tuple(
            ToolResult(call.id, call.name, outcome.content, is_error=outcome.outcome != "ok", images=outcome.images)
            for call, (_, outcome, _) in zip(calls, done, strict=True)))

    def _run_tool(self, attempt: Attempt, permissions: EffectivePermissions, call: ToolCall, stop: Stop,
                  log: LogSink) -> tuple[ToolCallRecord, ToolOutcome, Interrupted | None]:
        """One call, traced as it ends; an interruption is traced like any call, then ends the attempt."""
        began = time.monotonic()
        interrupted: Interrupted | None = None
        try:
            outcome = self.toolbox.call(call.name, call.args, permissions, attempt, stop=stop, log=log)
        except Interrupted as exc:
            outcome, interrupted = ToolOutcome("error", str(exc)), exc
        duration = (time.monotonic() - began) * 1000
        message = outcome.content[:MESSAGE_CHARS] if outcome.outcome != "ok" else None
        extra = {"message": message} if message is not None else {}
        attempt.bus.emit("tool.call", step=attempt.step.id, attempt=attempt.number, tool=call.name,
                         args=call.args, outcome=outcome.outcome, duration_ms=round(duration, 1),
                         result_chars=len(outcome.content), **extra)
        record = ToolCallRecord(call.name, call.args, outcome.outcome, duration, len(outcome.content), message)
        return record, outcome, interrupted

    def _answer(self, attempt: Attempt, convo: Conversation, response: ModelResponse) -> ActionResult | None:
        """A final answer: check its structure, then verify. None means: the model gets another turn."""
        step = attempt.step
        assert isinstance(step.spec, AgentStep)
        output: object = None
        if step.spec.output is not None:
            output, problem = _structured(response, step.spec.output.schema_)
            if problem is not None:
                if convo.output_retries >= MAX_OUTPUT_RETRIES:
                    return self._result("error", convo, error=f"structured output invalid after {MAX_OUTPUT_RETRIES} retries: {problem}")
                convo.output_retries += 1
                convo.messages += [AssistantMessage(response.text),
                                   UserMessage(f"Your final output does not match the required JSON schema: {problem}. "
                                               "Answer again with output that matches the schema exactly.")]
                return None
        result = self._result("ok", convo, output=output, text=response.text)
        checks = attempt.verify(result)
        result.verification = checks
        convo.last_checks = checks
        failed = [c for c in checks if not c.passed]
        broken = any(c.permanent for c in failed)  # a check that cannot pass: no turn can fix it
        if failed and not broken and convo.feedback_rounds < MAX_VERIFY_FEEDBACK:
            convo.feedback_rounds += 1
            convo.messages += [AssistantMessage(response.text), UserMessage(_feedback(failed))]
            return None
        return result

    def _result(self, status: str, convo: Conversation, *, error: str | None = None, output: object = None,
                text: str = "") -> ActionResult:
        outputs: dict[str, object] = {"text": text}
        if isinstance(output, dict):
            outputs.update(output)
        return ActionResult(status, error=error, output=output, outputs=outputs, usage=convo.usage,  # type: ignore[arg-type]
                            tool_calls=list(convo.calls))

    # --- the prompt ---------------------------------------------------------------------------

    def _first_message(self, attempt: Attempt) -> str:
        spec = attempt.step.spec
        assert isinstance(spec, AgentStep)
        parts = []
        for path in [*self.attachments, *(Path(f) for f in spec.files)]:
            # --attach files are the operator's own; a step's files stay inside the project, even
            # against a symlink made during the run.
            full = path if path.is_absolute() else resolve_in_root(attempt.root, path.as_posix())
            text = full.read_bytes()[:MAX_ATTACHMENT_BYTES].decode("utf-8", errors="replace")
            parts.append(f'<file path="{path.as_posix()}">\n{text.rstrip()}\n</file>')
        parts.append(render_text(spec.prompt, attempt.scope).strip())
        if spec.output is not None:
            parts.append("When you are done, give your final answer as JSON matching this schema"
                         " (with Anthropic models, by calling the final_output tool):\n"
                         + json.dumps(spec.output.schema_, sort_keys=True))
        return "\n\n".join(parts)


def _log_sink(attempt: Attempt) -> LogSink:
    """An MCP server's warnings and errors, as `tool.log` events of the step that was waiting on it."""
    def emit(log: ServerLog) -> None:
        attempt.bus.emit("tool.log", step=attempt.step.id, attempt=attempt.number, server=log.server,
                         level=log.level, logger=log.logger, message=log.message)
    return emit


def _context_text(step: PlannedStep, root: Path) -> str:
    return render_context(step.context, root) if step.context is not None else ""


def _structured(response: ModelResponse, schema: dict[str, object]) -> tuple[object, str | None]:
    value = response.structured
    if value is None:
        text = response.text.strip()
        if text.startswith("```"):
            text = text.strip("`").removeprefix("json").strip()
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            return None, "the answer is not JSON"
    return value, schema_problem(value, dict(schema))


def _feedback(failed: list[CheckResult]) -> str:
    lines = "\n".join(f"- {c.check} {c.target}: {c.detail}" for c in failed)
    return ("verification failed: your work is not done. These checks did not pass:\n" + lines +
            "\nFix the problems using your tools, then answer again.")


def _command_sandbox(plan: Plan, environ: Mapping[str, str]) -> Sandbox | None:
    """With `sandbox: true`, the sandbox run_command's children run in; none to be had is exit 2."""
    if not plan.spec.sandbox:
        return None
    sandbox = find_sandbox(environ)
    if isinstance(sandbox, str):
        raise ConfigurationError(f"{plan.display}: `sandbox: true` runs run_command's children in a sandbox, but "
                                 f"{sandbox}; install bubblewrap, or remove `sandbox: true`")
    return sandbox


def build_agent_runner(plan: Plan, *, record: Path | None, replay: Path | None, attach: list[Path],
                       allow: list[str], env: Mapping[str, str] | None = None) -> AgentRunner:
    """Everything agent steps need, checked before anything runs (exit 2 on a problem)."""
    import os

    from orchestr.project import Project

    project = Project(plan.root)
    environ = dict(os.environ if env is None else env)
    for path in attach:
        if not (path if path.is_absolute() else Path.cwd() / path).is_file():
            raise UsageError(f"--attach {path}: no such file")
    governance = Governance.for_state_dir(project.config.state_dir)
    permissions = {s.id: apply_grants(s.permissions, allow, governance=governance)
                   for s in plan.steps.values() if s.permissions is not None}
    from orchestr.events import Redactor
    from orchestr.runner import secret_values

    pool = ProviderPool(plan, project.config, environ, record=record, replay=replay,
                        redactor=Redactor(secret_values(project, plan, environ)))
    # tools run for real even with --replay, so their servers' variables are checked either way
    tools = [t for s in plan.steps.values() if s.agent is not None for t in s.agent.tools]
    check_server_env(project.config, [*tools, *granted_tools(allow)], environ)
    toolbox = Toolbox(project.config, plan.root, env=environ, command_sandbox=_command_sandbox(plan, environ))
    return AgentRunner(pool=pool, toolbox=toolbox, attachments=[p.resolve() for p in attach],
                       budget=RunBudget(plan.spec.budget), permissions=permissions, extra_tools=granted_tools(allow))
