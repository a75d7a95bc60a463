"""A local endpoint that refuses connections (Ollama not running) fails fast, naming its URL."""

from __future__ import annotations

import json
import socket
import time

import pytest

from tests.conftest import ProjectDir


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once it is closed: connections are refused


@pytest.mark.parametrize("provider", ["ollama", "anthropic"])
def test_a_refused_connection_fails_fast_naming_the_url(project: ProjectDir, provider: str) -> None:
    port = _closed_port()
    url = f"http://127.0.0.1:{port}/v1"
    project.write("orchestr.yaml", f"""
        providers:
          ollama: {{ kind: openai, base_url: "{url}" }}
        defaults:
          retry: {{ attempts: 3, backoff: 5s }}
    """)
    model = "ollama:llama3" if provider == "ollama" else "anthropic:claude-sonnet-4-6"
    project.write("workflows/draft.yaml", f"""
        agents:
          writer: {{ model: "{model}", instructions: Draft it. }}
        steps:
          - id: draft
            agent: writer
            prompt: Draft a reply.
    """)
    env = {"ANTHROPIC_API_KEY": "sk-test", "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}"}
    started = time.monotonic()
    ran = project.cli("run", "draft", "--events", "ev.jsonl", env=env)
    elapsed = time.monotonic() - started
    assert ran.exit_code == 1, ran.output
    assert f"connection refused by http://127.0.0.1:{port}" in ran.stdout
    assert elapsed < 30, f"took {elapsed:.0f}s: a refused connection must not be retried with full backoff"
    events = [json.loads(line) for line in (project.root / "ev.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events].count("step.started") == 1, "the step's own retries must not knock again"
    (finished,) = [e for e in events if e["event"] == "step.finished"]
    assert finished["status"] == "failed"
    assert "gave up after 3 attempts" in finished["reason"]
