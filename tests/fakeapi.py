"""A local HTTP server that speaks the Anthropic Messages and OpenAI Chat Completions protocols.

Agent steps are tested through the official SDKs against this server on 127.0.0.1: tool calls,
structured output, errors (429 with retry-after, 529 overloaded, 5xx, 404 for an unknown model),
slow replies (`delay=`), malformed bodies and dropped connections. Replies are scripted per provider
(FIFO), with an optional fallback responder. A client that gives up on a delayed reply is noticed:
its request lands in `server.aborted` and the reply is not sent.

    with FakeLLMServer() as srv:
        srv.anthropic.enqueue(Reply.tool_calls(ToolCall("write_file", {...})), Reply.text("done"))
        ... ANTHROPIC_BASE_URL=srv.anthropic_base_url ...
        srv.anthropic.requests[0].body   # what the SDK sent
        srv.aborted                      # requests whose client closed the connection while waiting

`python -m tests.fakeapi --port 8765 --latency 0.5` serves "done" to everything (for benchmarks).
"""

from __future__ import annotations

import argparse
import itertools
import json
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

_ids = itertools.count(1)
ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
                         429: "rate_limit_error", 529: "overloaded_error"}


@dataclass(frozen=True)
class ToolCall:
    name: str
    args: dict[str, Any]
    id: str = ""


@dataclass(frozen=True)
class Reply:
    kind: str  # text | tools | json | error | drop | malformed
    content: str = ""
    calls: tuple[ToolCall, ...] = ()
    value: Any = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    @classmethod
    def text(cls, text: str, *, delay: float = 0.0) -> Reply:
        return cls("text", content=text, delay=delay)

    @classmethod
    def tool_calls(cls, *calls: ToolCall, text: str = "", delay: float = 0.0) -> Reply:
        named = tuple(c if c.id else ToolCall(c.name, c.args, f"call_{next(_ids)}") for c in calls)
        return cls("tools", content=text, calls=named, delay=delay)

    @classmethod
    def json(cls, value: Any, *, delay: float = 0.0) -> Reply:
        return cls("json", value=value, delay=delay)

    @classmethod
    def error(cls, status: int, message: str = "error", *, headers: dict[str, str] | None = None,
              delay: float = 0.0) -> Reply:
        return cls("error", content=message, status=status, headers=headers or {}, delay=delay)

    @classmethod
    def rate_limited(cls, retry_after: float = 0.05) -> Reply:
        return cls.error(429, "rate limited", headers={"retry-after": str(retry_after)})

    @classmethod
    def overloaded(cls, retry_after_ms: int | None = 10) -> Reply:
        headers = {"retry-after-ms": str(retry_after_ms)} if retry_after_ms is not None else {}
        return cls.error(529, "Overloaded", headers=headers)

    @classmethod
    def drop(cls) -> Reply:
        return cls("drop")

    @classmethod
    def not_found(cls, model: str) -> Reply:
        """What both APIs answer for a model name that does not exist."""
        return cls.error(404, f"model: {model} not found")

    @classmethod
    def malformed(cls) -> Reply:
        """A 200 with a JSON content type whose body is cut short."""
        return cls("malformed")


@dataclass(frozen=True)
class ReceivedRequest:
    provider: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class Script:
    """One provider's queue of replies and the requests it received."""

    def __init__(self, provider: str, server: FakeLLMServer) -> None:
        self.provider = provider
        self._server = server
        self._queue: deque[Reply] = deque()
        self.responder: Callable[[ReceivedRequest], Reply] | None = None

    def enqueue(self, *replies: Reply) -> None:
        with self._server.lock:
            self._queue.extend(replies)

    def next_reply(self, request: ReceivedRequest) -> Reply:
        with self._server.lock:
            if self._queue:
                return self._queue.popleft()
        if self.responder is not None:
            return self.responder(request)
        return Reply.error(500, f"fake {self.provider} server: the script ran out of replies")

    @property
    def requests(self) -> list[ReceivedRequest]:
        return [r for r in self._server.requests if r.provider == self.provider]

    @property
    def pending(self) -> int:
        return len(self._queue)


def _anthropic_prefix(body: dict[str, Any]) -> str | None:
    """Tools + system + messages up to the last block carrying cache_control, serialised."""
    parts: list[Any] = []
    found: str | None = None
    for section in ("tools", "system", "messages"):
        value = body.get(section)
        items = value if isinstance(value, list) else ([value] if value else [])
        for item in items:
            parts.append(item)
            if "cache_control" in json.dumps(item):
                found = json.dumps(parts, sort_keys=True)
    return found


class FakeLLMServer:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[ReceivedRequest] = []
        self.aborted: list[ReceivedRequest] = []
        self.latency = 0.0
        self.anthropic = Script("anthropic", self)
        self.openai = Script("openai", self)
        self._prefixes: set[str] = set()
        self._bodies: list[str] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def anthropic_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def env(self) -> dict[str, str]:
        """Environment for an orchestr process talking to this server."""
        return {"ANTHROPIC_API_KEY": "test-anthropic-key", "ANTHROPIC_BASE_URL": self.anthropic_base_url,
                "OPENAI_API_KEY": "test-openai-key", "OPENAI_BASE_URL": self.openai_base_url}

    def __enter__(self) -> FakeLLMServer:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    # --- building responses -----------------------------------------------------------------

    def record(self, provider: str, path: str, headers: dict[str, str], body: dict[str, Any]) -> ReceivedRequest:
        request = ReceivedRequest(provider, path, headers, body)
        with self.lock:
            self.requests.append(request)
        return request

    def anthropic_usage(self, body: dict[str, Any], raw: bytes, reply_size: int) -> dict[str, int]:
        prefix = _anthropic_prefix(body)
        read = created = 0
        if prefix is not None:
            with self.lock:
                if prefix in self._prefixes:
                    read = len(prefix) // 4
                else:
                    created = len(prefix) // 4
                    self._prefixes.add(prefix)
        return {"input_tokens": max(1, len(raw) // 4 - read - created), "output_tokens": max(1, reply_size // 4),
                "cache_creation_input_tokens": created, "cache_read_input_tokens": read}

    def openai_usage(self, body: dict[str, Any], raw: bytes, reply_size: int) -> dict[str, Any]:
        messages = json.dumps(body.get("messages", []), sort_keys=True)
        with self.lock:
            common = max((_common_prefix(messages, seen) for seen in self._bodies), default=0)
            self._bodies.append(messages)
        cached = (common // 128) * 128 // 4 if common >= 1024 else 0
        prompt = max(1, len(raw) // 4)
        completion = max(1, reply_size // 4)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                "prompt_tokens_details": {"cached_tokens": cached}}


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _anthropic_message(server: FakeLLMServer, body: dict[str, Any], raw: bytes, reply: Reply) -> dict[str, Any]:
    content: list[dict[str, Any]] = []
    stop = "end_turn"
    if reply.content:
        content.append({"type": "text", "text": reply.content})
    if reply.kind == "tools":
        content += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.args} for c in reply.calls]
        stop = "tool_use"
    elif reply.kind == "json":
        forced = (body.get("tool_choice") or {}).get("name")
        offered = [t.get("name") for t in body.get("tools", []) if t.get("name") == "final_output"]
        name = forced or (offered[0] if offered else None)
        if name:
            content.append({"type": "tool_use", "id": f"toolu_{next(_ids)}", "name": name, "input": reply.value})
            stop = "tool_use"
        else:
            content.append({"type": "text", "text": json.dumps(reply.value)})
    size = len(json.dumps(content))
    return {"id": f"msg_{next(_ids)}", "type": "message", "role": "assistant", "model": body.get("model", ""),
            "content": content, "stop_reason": stop, "stop_sequence": None,
            "usage": server.anthropic_usage(body, raw, size)}


def _openai_completion(server: FakeLLMServer, body: dict[str, Any], raw: bytes, reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content or None, "refusal": None}
    finish = "stop"
    if reply.kind == "tools":
        message["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": json.dumps(c.args)}} for c in reply.calls]
        finish = "tool_calls"
    elif reply.kind == "json":
        message["content"] = json.dumps(reply.value)
    size = len(json.dumps(message))
    return {"id": f"chatcmpl-{next(_ids)}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", ""), "choices": [{"index": 0, "message": message, "finish_reason": finish,
                                                         "logprobs": None}],
            "usage": server.openai_usage(body, raw, size)}


def _error_body(provider: str, reply: Reply) -> dict[str, Any]:
    if provider == "anthropic":
        kind = ANTHROPIC_ERROR_TYPES.get(reply.status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": reply.content}}
    return {"error": {"message": reply.content, "type": "server_error" if reply.status >= 500 else "invalid_request_error",
                      "param": None, "code": str(reply.status)}}


_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _invalid_tool_name(provider: str, body: dict[str, Any]) -> str | None:
    for tool in body.get("tools") or []:
        name = tool.get("name") if provider == "anthropic" else tool.get("function", {}).get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            return str(name)
    return None


def _handler(server: FakeLLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: without TCP_NODELAY, Nagle's algorithm and the
        # client's delayed ACK add ~40 ms to every reply, as no real API server does.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            provider = {"/v1/messages": "anthropic", "/v1/chat/completions": "openai"}.get(self.path.split("?")[0])
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if provider is None:
                self._send(404, {"error": {"message": f"no route {self.path}"}})
                return
            body = json.loads(raw or b"{}")
            request = server.record(provider, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            reply = (server.anthropic if provider == "anthropic" else server.openai).next_reply(request)
            if not self._wait_unless_closed(reply.delay + server.latency):
                with server.lock:
                    server.aborted.append(request)
                self.close_connection = True
                return
            if reply.kind == "drop":
                self.close_connection = True
                self.connection.close()
                return
            bad_name = _invalid_tool_name(provider, body)
            if bad_name:  # as the real APIs do: ^[a-zA-Z0-9_-]{1,64}$
                self._send(400, _error_body(provider, Reply.error(400, f"tools: invalid tool name {bad_name!r}")))
            elif body.get("stream"):
                self._send(400, _error_body(provider, Reply.error(400, "streaming is not supported by the fake server")))
            elif reply.kind == "error":
                self._send(reply.status, _error_body(provider, reply), reply.headers)
            elif reply.kind == "malformed":
                self._send_raw(200, b'{"id": "msg_1", "type": "mess')
            elif provider == "anthropic":
                self._send(200, _anthropic_message(server, body, raw, reply))
            else:
                self._send(200, _openai_completion(server, body, raw, reply))

        def _wait_unless_closed(self, seconds: float) -> bool:
            """Sleep `seconds`; False as soon as the client closes the connection (gave up)."""
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
                if readable:
                    try:
                        if self.connection.recv(1, socket.MSG_PEEK) == b"":
                            return False
                    except OSError:
                        return False
                    time.sleep(min(left, 0.05))  # a pipelined request: not ours to read
            return True

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
            self._send_raw(status, json.dumps(payload).encode(), headers)

        def _send_raw(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("request-id", f"req_{next(_ids)}")
            self.send_header("x-request-id", f"req_{next(_ids)}")
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            return

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve fake Anthropic/OpenAI APIs on 127.0.0.1")
    parser.add_argument("--latency", type=float, default=0.0)
    args = parser.parse_args()
    with FakeLLMServer() as srv:
        srv.latency = args.latency
        srv.anthropic.responder = lambda request: Reply.text("done")
        srv.openai.responder = lambda request: Reply.text("done")
        print(f"ANTHROPIC_BASE_URL={srv.anthropic_base_url}\nOPENAI_BASE_URL={srv.openai_base_url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            return


if __name__ == "__main__":
    main()
