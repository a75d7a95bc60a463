"""OpenTelemetry spans from run events (the GenAI semantic conventions), as an EventSink.

The engine does not change: spans are built from the same events the trace and the store get.
Model and tool calls are reported when they end, with their duration, so their spans start at
`ts - duration_ms`. Event values arrive redacted from the bus; tool arguments are exported only
when OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true, and so are an agent attempt's
prompt and instructions (through the bus's content channel, redacted, never stored). The exporter is the SDK's
OTLP/HTTP one, configured by the standard OTEL_EXPORTER_OTLP_* variables; a `TRACEPARENT` in the
environment makes the run a child of that trace (a CI job's, say).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from orchestr import __version__
from orchestr.events import Event
from orchestr.observability.telemetry import capture_content
from orchestr.plan import Plan

SCOPE = "orchestr"
FAILED_STEP = ("failed", "unverified", "cancelled")
Attrs = dict[str, str | int | float | bool]


def _ns(ts: datetime, *, minus_ms: float = 0.0) -> int:
    return int((ts - timedelta(milliseconds=minus_ms)).timestamp() * 1e9)


def parent_context(env: Mapping[str, str]) -> Context | None:
    """The W3C trace context from TRACEPARENT/TRACESTATE, when set."""
    carrier = {k: env[v] for k, v in (("traceparent", "TRACEPARENT"), ("tracestate", "TRACESTATE")) if env.get(v)}
    return TraceContextTextMapPropagator().extract(carrier) if "traceparent" in carrier else None


def default_processor() -> SpanProcessor:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return BatchSpanProcessor(OTLPSpanExporter())


class OtelSink:
    """One run's spans: `invoke_workflow` > `step` > `invoke_agent` > `chat` / `execute_tool`, and `verify`."""

    def __init__(self, *, agents: Mapping[str, tuple[str, str]], processor: SpanProcessor,
                 parent: Context | None = None, capture: bool = False) -> None:
        self._agents = agents  # step id -> (agent name, provider:model)
        self._provider = TracerProvider(resource=Resource.create({"service.name": "orchestr"}))
        self._provider.add_span_processor(processor)
        self._tracer = self._provider.get_tracer(SCOPE, __version__)
        self._parent = parent
        self._capture = capture
        self._run: Span | None = None
        self._steps: dict[tuple[str, int], Span] = {}
        self._agent_spans: dict[tuple[str, int], Span] = {}

    @classmethod
    def for_plan(cls, plan: Plan, *, env: Mapping[str, str], processor: SpanProcessor | None = None) -> OtelSink:
        agents = {str(s.id): (s.agent.name, s.agent.model) for s in plan.steps.values() if s.agent is not None}
        return cls(agents=agents, processor=processor or default_processor(), parent=parent_context(env),
                   capture=capture_content(env))

    def emit(self, event: Event) -> None:
        handler = _HANDLERS.get(event.event)
        if handler is not None:
            handler(self, event)

    # --- the run and its steps ------------------------------------------------------------------

    def _run_started(self, event: Event) -> None:
        self._run = self._tracer.start_span(
            f"invoke_workflow {event.workflow}", context=self._parent, kind=SpanKind.INTERNAL,
            start_time=_ns(event.ts), attributes={"gen_ai.operation.name": "invoke_workflow",
                                                 "orchestr.workflow": event.workflow, "orchestr.run.id": event.run,
                                                 "orchestr.run.resumed": bool(event.data.get("resumed"))})

    def _under(self, span: Span | None) -> Context | None:
        return trace.set_span_in_context(span) if span is not None else self._parent

    def _step_started(self, event: Event) -> None:
        step, attempt = event.step or "", event.attempt or 1
        span = self._tracer.start_span(f"step {step}", context=self._under(self._run), start_time=_ns(event.ts),
                                       attributes={"orchestr.step.id": step, "orchestr.step.attempt": attempt,
                                                   "orchestr.step.kind": str(event.data.get("kind"))})
        self._steps[(step, attempt)] = span
        if step in self._agents:
            name, model = self._agents[step]
            provider, _, model_name = model.partition(":")
            self._agent_spans[(step, attempt)] = self._tracer.start_span(
                f"invoke_agent {name}", context=self._under(span), start_time=_ns(event.ts),
                attributes={"gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": name,
                            "gen_ai.provider.name": provider, "gen_ai.request.model": model_name})

    def _end_attempt(self, event: Event, attrs: Attrs, error: str | None) -> None:
        key = (event.step or "", event.attempt or 1)
        for span in (self._agent_spans.pop(key, None), self._steps.pop(key, None)):
            if span is None:
                continue
            span.set_attributes(attrs)
            if error is not None:
                span.set_status(Status(StatusCode.ERROR, error))
            span.end(end_time=_ns(event.ts))

    def _step_retry(self, event: Event) -> None:
        reason = str(event.data.get("reason"))
        self._end_attempt(event, {"orchestr.step.status": "retrying", "orchestr.step.reason": reason}, reason)

    def _step_finished(self, event: Event) -> None:
        d = event.data
        status, reason = str(d.get("status")), d.get("reason")
        attrs: Attrs = {"orchestr.step.status": status, "orchestr.step.attempts": int(str(d.get("attempts") or 0))}
        if reason:
            attrs["orchestr.step.reason"] = str(reason)
        tokens = d.get("tokens")
        if isinstance(tokens, Mapping):
            attrs.update({"gen_ai.usage.input_tokens": int(tokens.get("input", 0)),
                          "gen_ai.usage.output_tokens": int(tokens.get("output", 0))})
        key = (event.step or "", event.attempt or 1)
        if key not in self._steps:  # finished without running: skipped, or failed on its condition
            self._steps[key] = self._tracer.start_span(f"step {key[0]}", context=self._under(self._run),
                                                       start_time=_ns(event.ts), attributes={"orchestr.step.id": key[0]})
        self._end_attempt(event, attrs, str(reason) if status in FAILED_STEP else None)

    def _run_finished(self, event: Event) -> None:
        for key in list(self._steps):  # a step the run's end cut short
            self._end_attempt(Event(event.ts, event.run, event.workflow, "step.finished", key[0], key[1]), {}, "cut short")
        if self._run is not None:
            status = str(event.data.get("status"))
            self._run.set_attributes({"orchestr.run.status": status,
                                      "orchestr.run.exit_code": int(str(event.data.get("exit_code") or 0))})
            if status != "succeeded":
                self._run.set_status(Status(StatusCode.ERROR, status))
            self._run.end(end_time=_ns(event.ts))
        self._provider.shutdown()  # flushes: the run's spans leave before the process does

    def content(self, step: str, attempt: int, *, prompt: str, instructions: str) -> None:
        """The attempt's prompt and instructions on its `invoke_agent` span, only when opted in (redacted)."""
        span = self._agent_spans.get((step, attempt))
        if not self._capture or span is None:
            return
        span.set_attribute("gen_ai.input.messages",
                           json.dumps([{"role": "user", "parts": [{"type": "text", "content": prompt}]}]))
        span.set_attribute("gen_ai.system_instructions", json.dumps([{"type": "text", "content": instructions}]))

    # --- calls and checks -----------------------------------------------------------------------

    def _parent_of(self, event: Event) -> Context | None:
        key = (event.step or "", event.attempt or 1)
        return self._under(self._agent_spans.get(key) or self._steps.get(key) or self._run)

    def _model_call(self, event: Event) -> None:
        d = event.data
        attrs: Attrs = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": str(d.get("provider")),
                        "gen_ai.request.model": str(d.get("model")),
                        "gen_ai.usage.input_tokens": int(str(d.get("tokens_in") or 0)),
                        "gen_ai.usage.output_tokens": int(str(d.get("tokens_out") or 0)),
                        "gen_ai.usage.cache_read.input_tokens": int(str(d.get("tokens_cached") or 0)),
                        "orchestr.turn": int(str(d.get("turn") or 0)), "orchestr.retries": int(str(d.get("retries") or 0))}
        if d.get("retry_in") is not None:
            attrs["orchestr.retry_in_seconds"] = float(str(d.get("retry_in")))
        self._call_span(event, f"chat {d.get('model')}", attrs, SpanKind.CLIENT, d.get("error"))

    def _tool_call(self, event: Event) -> None:
        d = event.data
        outcome = str(d.get("outcome"))
        attrs: Attrs = {"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": str(d.get("tool")),
                        "orchestr.tool.outcome": outcome, "orchestr.tool.result_chars": int(str(d.get("result_chars") or 0))}
        if self._capture:
            attrs["gen_ai.tool.call.arguments"] = json.dumps(d.get("args"), default=str)
        error = None if outcome == "ok" else str(d.get("message") or outcome)
        if error is not None:
            attrs["error.type"] = outcome
        self._call_span(event, f"execute_tool {d.get('tool')}", attrs, SpanKind.INTERNAL, error)

    def _tool_log(self, event: Event) -> None:
        """An MCP server's warning, as an event on the agent span that was waiting on it."""
        key = (event.step or "", event.attempt or 1)
        span = self._agent_spans.get(key) or self._steps.get(key)
        if span is not None:
            d = event.data
            span.add_event("mcp.log", {"orchestr.mcp.server": str(d.get("server")),
                                       "orchestr.mcp.level": str(d.get("level")),
                                       "orchestr.mcp.message": str(d.get("message"))}, timestamp=_ns(event.ts))

    def _call_span(self, event: Event, name: str, attrs: Attrs, kind: SpanKind, error: object) -> None:
        took = float(str(event.data.get("duration_ms") or 0))
        span = self._tracer.start_span(name, context=self._parent_of(event), kind=kind,
                                       start_time=_ns(event.ts, minus_ms=took), attributes=attrs)
        if error:
            if "error.type" not in attrs:
                span.set_attribute("error.type", "provider_error")
            span.set_status(Status(StatusCode.ERROR, str(error)))
        span.end(end_time=_ns(event.ts))

    def _verify_result(self, event: Event) -> None:
        d = event.data
        passed = bool(d.get("passed"))
        span = self._tracer.start_span(
            f"verify {d.get('check')}", context=self._parent_of(event), start_time=_ns(event.ts),
            attributes={"orchestr.verify.check": str(d.get("check")), "orchestr.verify.target": str(d.get("target")),
                        "orchestr.verify.passed": passed, "orchestr.verify.detail": str(d.get("detail"))})
        if not passed:
            span.set_status(Status(StatusCode.ERROR, str(d.get("detail"))))
        span.end(end_time=_ns(event.ts))


_HANDLERS = {
    "run.started": OtelSink._run_started, "step.started": OtelSink._step_started,
    "step.retry": OtelSink._step_retry, "step.finished": OtelSink._step_finished,
    "run.finished": OtelSink._run_finished, "model.call": OtelSink._model_call,
    "tool.call": OtelSink._tool_call, "tool.log": OtelSink._tool_log, "verify.result": OtelSink._verify_result,
}
