"""Whether a run exports OpenTelemetry: only when the standard OTLP variables say where to.

This module imports nothing of OpenTelemetry; orchestr/observability/otel.py (the SDK) is
imported only when a run is configured to export, so `validate`, `tick` and unconfigured runs
never load it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from orchestr.events import EventSink
from orchestr.plan import Plan

ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
CAPTURE_VAR = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
INSTALL_HINT = "pip install 'orchestr[otel]'"


def enabled(env: Mapping[str, str]) -> bool:
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "otlp").lower() == "none":
        return False
    return any(env.get(name) for name in ENDPOINT_VARS)


def capture_content(env: Mapping[str, str]) -> bool:
    return env.get(CAPTURE_VAR, "").lower() in ("true", "1", "yes")


def telemetry_sinks(plan: Plan, env: Mapping[str, str]) -> list[EventSink]:
    """An OpenTelemetry sink for this run when configured; a warning (not a failure) without the extra."""
    if not enabled(env):
        return []
    try:
        from orchestr.observability.otel import OtelSink
    except ImportError as exc:
        print(f"warning: OTEL_EXPORTER_OTLP_* is set but OpenTelemetry is not installed ({exc.name}); "
              f"no spans are exported: {INSTALL_HINT}", file=sys.stderr)
        return []
    return [OtelSink.for_plan(plan, env=env)]
