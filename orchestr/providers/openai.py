"""OpenAI Chat Completions (and compatible endpoints) through the official SDK, imported lazily."""

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


class OpenAIProvider:
    def __init__(self, *, name: str, api_key: str, base_url: str | None, timeout: float) -> None:
        import openai

        self.name = name
        self._sdk = openai
        # The async client, so that a call in flight can be abandoned (see inflight.py).
        self._loop = EventLoopThread(f"orchestr-{name}")
        self._client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0, timeout=timeout)

    def close(self) -> None:
        self._loop.close(self._client.close)

    def complete(self, request: ModelRequest, *, stop: Stop = NEVER) -> ModelResponse:
        kwargs = build_kwargs(request, legacy_max_tokens=self.name != "openai")
        try:
            completion = self._loop.call(lambda: self._client.chat.completions.create(**kwargs), stop)
        except self._sdk.APIStatusError as exc:
            raise _status_error(self.name, exc) from None
        except self._sdk.APIConnectionError as exc:
            raise connection_error(self.name, exc, base_url=self._client.base_url) from None
        except (self._sdk.APIResponseValidationError, ValueError) as exc:
            raise malformed_reply(self.name, exc) from None
        try:
            return _response(completion, request)
        except (AttributeError, TypeError, KeyError, IndexError) as exc:
            raise malformed_reply(self.name, exc) from None


def build_kwargs(request: ModelRequest, *, legacy_max_tokens: bool = False) -> dict[str, Any]:
    """The stable prefix first: the context, then the instructions, then the conversation.

    OpenAI-compatible servers (Ollama, vLLM, LM Studio) know `max_tokens`, not its successor.
    """
    messages: list[dict[str, Any]] = [{"role": "system", "content": request.context}]
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    for message in request.messages:
        messages.extend(_messages(message))
    limit = "max_tokens" if legacy_max_tokens else "max_completion_tokens"
    kwargs: dict[str, Any] = {"model": request.model, "messages": messages, limit: request.max_tokens}
    if request.tools:
        kwargs["tools"] = [{"type": "function", "function": {"name": wire_name(t.name), "description": t.description,
                                                             "parameters": t.input_schema}} for t in request.tools]
    if request.output_schema is not None:
        kwargs["response_format"] = {"type": "json_schema",
                                     "json_schema": {"name": "final_output", "schema": request.output_schema}}
    return kwargs


def _messages(message: Message) -> list[dict[str, Any]]:
    if isinstance(message, UserMessage):
        return [{"role": "user", "content": message.text}]
    if isinstance(message, AssistantMessage):
        entry: dict[str, Any] = {"role": "assistant", "content": message.text or None}
        if message.tool_calls:
            entry["tool_calls"] = [{"id": c.id, "type": "function",
                                    "function": {"name": wire_name(c.name), "arguments": json.dumps(c.args)}}
                                   for c in message.tool_calls]
        return [entry]
    # Chat Completions has no error flag on a tool message (nor images in one): the text says it.
    return [{"role": "tool", "tool_call_id": r.call_id, "content": _result_text(r)} for r in message.results]


def _result_text(result: ToolResult) -> str:
    if result.is_error and not result.content.startswith(("error:", "denied:")):
        return f"error: {result.content}"
    return result.content


def _arguments(text: str | None) -> dict[str, Any]:
    try:
        value = json.loads(text or "{}")
    except json.JSONDecodeError:
        return {"__invalid_json__": text}
    return value if isinstance(value, dict) else {"__invalid_json__": text}


def _response(completion: Any, request: ModelRequest) -> ModelResponse:
    choice = completion.choices[0]
    message = choice.message
    names = tool_names(request)
    calls = tuple(ToolCall(c.id, from_wire(c.function.name, names), _arguments(c.function.arguments))
                  for c in (message.tool_calls or []))
    usage = completion.usage
    details = getattr(usage, "prompt_tokens_details", None) if usage else None
    cached = (getattr(details, "cached_tokens", 0) or 0) if details else 0
    structured = None
    if request.output_schema is not None and not calls and message.content:
        try:
            structured = json.loads(message.content)
        except json.JSONDecodeError:
            structured = None
    return ModelResponse(text=message.content or "", tool_calls=calls,
                         usage=Usage(usage.prompt_tokens if usage else 0, usage.completion_tokens if usage else 0, cached),
                         stop_reason=choice.finish_reason or "", structured=structured)


def _status_error(name: str, exc: Any) -> ProviderError:
    status = exc.status_code
    message = getattr(exc, "message", None) or str(exc)
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        message = body["message"]
    return ProviderError(f"{name}: HTTP {status}: {message}", status=status, retryable=status in RETRYABLE_STATUS,
                         retry_after=retry_after_seconds(exc.response.headers))
