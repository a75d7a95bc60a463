"""The provider seam: one method, normalised messages, one error type.

Adapters (anthropic.py, openai.py) translate to and from their SDK; each imports its SDK only
inside itself, only when a model is called. A fake and a replay provider sit beside them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestr.errors import OrchestrError
from orchestr.interruption import NEVER, Stop
from orchestr.steps.base import Usage


@dataclass(frozen=True)
class ToolDef:
    name: str
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Image:
    """An image a tool returned, as base64: an image block where the provider takes one."""

    mime_type: str
    data: str


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    name: str
    content: str
    is_error: bool = False
    images: tuple[Image, ...] = ()


@dataclass(frozen=True)
class UserMessage:
    text: str


@dataclass(frozen=True)
class AssistantMessage:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()


@dataclass(frozen=True)
class ToolResultsMessage:
    results: tuple[ToolResult, ...]


Message = UserMessage | AssistantMessage | ToolResultsMessage


@dataclass(frozen=True)
class ModelRequest:
    """`context` and `instructions` form the stable prefix (with `tools`) that providers cache."""

    model: str
    context: str
    instructions: str
    messages: tuple[Message, ...]
    tools: tuple[ToolDef, ...] = ()
    output_schema: dict[str, Any] | None = None
    max_tokens: int = 4096


@dataclass(frozen=True)
class ModelResponse:
    text: str
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage = field(default_factory=Usage)
    stop_reason: str = ""
    structured: Any = None  # the forced structured output, when the provider returned one


class ProviderError(OrchestrError):
    """A provider call that failed: retryable (429, 5xx, 529, timeouts, drops, malformed replies) or
    not; `permanent` (400/401/403/404: a bad request, a bad key, a wrong model) is never worth
    another attempt of the step either."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = False,
                 retry_after: float | None = None, refused: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.refused = refused  # nothing listens at the endpoint: a few quick retries, then give up

    @property
    def permanent(self) -> bool:
        return self.status in PERMANENT_STATUS or (self.refused and not self.retryable)


RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 529})
PERMANENT_STATUS = frozenset({400, 401, 403, 404})


class Provider(Protocol):
    """`complete` gives up with orchestr.interruption.Interrupted when `stop` says so, aborting
    the request in flight."""

    name: str

    def complete(self, request: ModelRequest, *, stop: Stop = NEVER) -> ModelResponse: ...


def connection_error(provider: str, exc: Exception, *, base_url: object) -> ProviderError:
    """A dropped or timed-out connection is retried with backoff; a refused one (a local server such as
    Ollama not running) is not worth a minute of backoff, and its message names the URL."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, ConnectionRefusedError):
        cause = cause.__cause__ or cause.__context__
    if cause is not None or "connection refused" in str(exc.__cause__ or "").lower():
        return ProviderError(f"{provider}: connection refused by {base_url}: is the server running, "
                             "and is base_url right?", retryable=True, refused=True)
    return ProviderError(f"{provider}: {type(exc).__name__}: {exc} ({base_url})", retryable=True)


def malformed_reply(provider: str, exc: Exception) -> ProviderError:
    """A 200 whose body is not the JSON the SDK expects: transient (a proxy, a cut reply)."""
    return ProviderError(f"{provider}: malformed reply from the API ({type(exc).__name__}: {exc})", retryable=True)


def retry_after_seconds(headers: Any) -> float | None:
    """`retry-after-ms` or `retry-after` (seconds) from response headers."""
    if headers is None:
        return None
    for key, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(key)
        if value is None:
            continue
        try:
            return max(0.0, float(value) * scale)
        except ValueError:
            continue
    return None


_WIRE_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def wire_name(name: str) -> str:
    """A tool name as both APIs accept it (letters, digits, `_`, `-`): `time.now` -> `time__now`."""
    return _WIRE_UNSAFE.sub("__", name)[:64]


def tool_names(request: ModelRequest) -> dict[str, str]:
    """Wire names back to the tools' own names, for the calls a model makes."""
    return {wire_name(t.name): t.name for t in request.tools}


def from_wire(name: str, names: dict[str, str]) -> str:
    """The tool a model called; one it was not offered keeps the `server.tool` shape for the trace."""
    if name in names:
        return names[name]
    return name.replace("__", ".", 1) if "__" in name else name
