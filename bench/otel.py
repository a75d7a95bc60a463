"""OpenTelemetry overhead (issue 15): per model call and per step, export on vs off.

Runs on its own (`.venv/bin/python bench/otel.py`). The events of a step with MODEL_CALLS model
calls and as many tool calls go through the real EventBus (redaction included), once with no
sinks and once with the OtelSink exporting over OTLP/HTTP (the SDK's batch processor and
exporter) to a real receiver on 127.0.0.1; the receiver's decoding runs in another thread, as a
collector would in another process. Goal: < 0.5 ms more per call.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestr.events import EventBus, EventSink, Redactor  # noqa: E402

STEPS = 200
MODEL_CALLS = 5
ROUNDS = 5


def one_step(bus: EventBus, n: int) -> tuple[float, float]:
    """(seconds for the step's own events, seconds per model call incl. its tool call)."""
    step = f"s{n}"
    began = time.perf_counter()
    bus.emit("step.started", step=step, attempt=1, kind="agent")
    calls_began = time.perf_counter()
    for turn in range(1, MODEL_CALLS + 1):
        bus.emit("model.call", step=step, attempt=1, provider="anthropic", model="claude-sonnet-4-6", turn=turn,
                 tokens_in=2210, tokens_out=143, tokens_cached=1830, duration_ms=812.5, retries=0)
        bus.emit("tool.call", step=step, attempt=1, tool="write_file", args={"path": "out/x.json", "content": "{}"},
                 outcome="ok", duration_ms=0.8, result_chars=31)
    per_call = (time.perf_counter() - calls_began) / MODEL_CALLS
    bus.emit("verify.result", step=step, attempt=1, check="file_exists", target="out/x.json", passed=True,
             detail="exists")
    bus.emit("step.finished", step=step, attempt=1, status="succeeded", reason=None, attempts=1, duration_ms=4100.0,
             tokens={"input": 11050, "output": 715, "cached": 9150})
    return time.perf_counter() - began - per_call * MODEL_CALLS, per_call


def measure(make_sinks: Callable[[], list[EventSink]] | None) -> tuple[float, float]:
    step_times, call_times = [], []
    for _ in range(ROUNDS):
        sinks = make_sinks() if make_sinks is not None else []
        bus = EventBus(run="bench", workflow="bench", redactor=Redactor(["sk-secret"]), sinks=sinks)
        bus.emit("run.started", inputs={}, resumed=False, steps=[], kept=[])
        for n in range(STEPS):
            step_s, call_s = one_step(bus, n)
            step_times.append(step_s)
            call_times.append(call_s)
        bus.emit("run.finished", status="succeeded", exit_code=0, tokens={})  # flushes the exporter
    return statistics.median(step_times) * 1000, statistics.median(call_times) * 1000


def main() -> None:
    from tests.otlp_receiver import OtlpReceiver

    with OtlpReceiver() as receiver:
        import os

        os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.endpoint
        from orchestr.observability.otel import OtelSink, default_processor

        def otel() -> list[EventSink]:
            return [OtelSink(agents={f"s{n}": ("agent", "anthropic:claude-sonnet-4-6") for n in range(STEPS)},
                             processor=default_processor())]

        off_step, off_call = measure(None)
        on_step, on_call = measure(otel)
        spans = len(receiver.spans)
    expected = ROUNDS * (1 + STEPS * (3 + 2 * MODEL_CALLS))
    print(f"{'':28}{'off':>10}{'on':>10}{'more':>10}")
    print(f"{'per model+tool call (ms)':28}{off_call:10.4f}{on_call:10.4f}{on_call - off_call:10.4f}")
    print(f"{'per step, own events (ms)':28}{off_step:10.4f}{on_step:10.4f}{on_step - off_step:10.4f}")
    print(f"spans received: {spans} of {expected}")
    if on_call - off_call >= 0.5:
        raise SystemExit("over budget: OpenTelemetry adds 0.5 ms or more per model call")


if __name__ == "__main__":
    main()
