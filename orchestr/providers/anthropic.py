"""Anthropic Messages API through the official SDK (imported here, and only when called)."""

from __future__ import annotations

import json
from typing import Any

from orchestr.interruption import NEVER, Stop
from orchestr.providers.base import (
    RETRYABLE_STATUS,
    AssistantMessage,
    Message,
    ModelRequest,
    ModelResponse,
    ProviderError,
    ToolCall,
    ToolResult,
    UserMessage,
    connection_error,
    from_wire,
    malformed_reply,
    retry_after_seconds,
    tool_names,
    wire_name,
)
from orchestr.providers.inflight import EventLoopThread
from orchestr.steps.base import Usage

STRUCTURED_TOOL = "final_output"


class AnthropicProvider:
    def __init__(self, *, name: str = "anthropic", api_key: str, base_url: str | None, timeout: float) -> None:
        self.name = name
        import anthropic

        # One retry layer: ours (RetryingProvider), so the SDK's own retries are off. The async
        # client, so that a call in flight can be abandoned (see inflight.py).
        self._sdk = anthropic
        self._loop = EventLoopThread(f"orchestr-{name}")
        self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)

    def close(self) -> None:
        self._loop.close(self._client.close)

    def complete(self, request: ModelRequest, *, stop: Stop = NEVER) -> ModelResponse:
        kwargs = build_kwargs(request)
        try:
            message = self._loop.call(lambda: self._client.messages.create(**kwargs), stop)
        except self._sdk.APIStatusError as exc:
            raise _status_error(exc) from None
        except self._sdk.APIConnectionError as exc:
            raise connection_error(self.name, exc, base_url=self._client.base_url) from None
        except (self._sdk.APIResponseValidationError, ValueError) as exc:
            raise malformed_reply(self.name, exc) from None
        try:
            return _response(message, tool_names(request))
        except (AttributeError, TypeError, KeyError) as exc:
            raise malformed_reply(self.name, exc) from None


def build_kwargs(request: ModelRequest) -> dict[str, Any]:
    """The request body: tools, then the context block with the cache breakpoint, then the rest."""
    # The breakpoint closes the stable prefix; the API refuses it on an empty block (no context).
    system: list[dict[str, Any]] = []
    if request.context:
        system.append({"type": "text", "text": request.context, "cache_control": {"type": "ephemeral"}})
    if request.instructions:
        system.append({"type": "text", "text": request.instructions})
    tools = [{"name": wire_name(t.name), "description": t.description, "input_schema": t.input_schema}
             for t in request.tools]
    kwargs: dict[str, Any] = {
        "model": request.model, "max_tokens": request.max_tokens,
        "messages": [_message(m) for m in request.messages],
    }
    if system:
        kwargs["system"] = system
    if request.output_schema is not None:
        tools.append({"name": STRUCTURED_TOOL, "description": "Return your final answer as structured output.",
                      "input_schema": request.output_schema})
    if tools:
        kwargs["tools"] = tools
    if request.output_schema is not None and not request.tools:
        kwargs["tool_choice"] = {"type": "tool", "name": STRUCTURED_TOOL}
    return kwargs


def _message(message: Message) -> dict[str, Any]:
    if isinstance(message, UserMessage):
        return {"role": "user", "content": message.text}
    if isinstance(message, AssistantMessage):
        blocks: list[dict[str, Any]] = [{"type": "text", "text": message.text}] if message.text else []
        blocks += [{"type": "tool_use", "id": c.id, "name": wire_name(c.name), "input": c.args}
                   for c in message.tool_calls]
        return {"role": "assistant", "content": blocks}
    return {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": r.call_id, "content": _result_content(r), "is_error": r.is_error}
        for r in message.results]}


def _result_content(result: ToolResult) -> str | list[dict[str, Any]]:
    """The text, and the tool's images as image blocks after it."""
    if not result.images:
        return result.content
    return [{"type": "text", "text": result.content}, *(
        {"type": "image", "source": {"type": "base64", "media_type": image.mime_type, "data": image.data}}
        for image in result.images)]


def _response(message: Any, names: dict[str, str]) -> ModelResponse:
    texts, calls, structured = [], [], None
    for block in message.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use" and block.name == STRUCTURED_TOOL:
            structured = block.input
        elif block.type == "tool_use":
            calls.append(ToolCall(block.id, from_wire(block.name, names), dict(block.input or {})))
    usage = message.usage
    cached = (getattr(usage, "cache_read_input_tokens", 0) or 0)
    created = (getattr(usage, "cache_creation_input_tokens", 0) or 0)
    text = "\n".join(texts)
    if structured is not None and not text:
        text = json.dumps(structured)
    return ModelResponse(text=text, tool_calls=tuple(calls),
                         usage=Usage(usage.input_tokens + cached + created, usage.output_tokens, cached),
                         stop_reason=message.stop_reason or "", structured=structured)


def _status_error(exc: Any) -> ProviderError:
    status = exc.status_code
    message = getattr(exc, "message", None) or str(exc)
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        message = body["error"].get("message", message)
    return ProviderError(f"anthropic: HTTP {status}: {message}", status=status, retryable=status in RETRYABLE_STATUS,
                         retry_after=retry_after_seconds(exc.response.headers))
