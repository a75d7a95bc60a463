"""Shell steps: `run:` through bash with errexit and pipefail, values only as env vars."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from orchestr.events import LogLine
from orchestr.models import ShellStep
from orchestr.processes import run_process
from orchestr.steps.base import ActionResult, Attempt

BASH_PRELUDE = "set -eo pipefail\n"


class OutputsError(ValueError):
    """An $ORCHESTR_OUTPUT file that cannot be read as outputs (an unclosed `key<<DELIM`)."""


def parse_outputs(text: str) -> dict[str, object]:
    """One JSON object, or `key=value` lines (the value is everything after the first `=`), or,
    as in GitHub Actions, `key<<DELIM` then the value's lines up to a line that is exactly `DELIM`.
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    outputs: dict[str, object] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        key, sep, value = line.partition("=")
        heredoc_key, heredoc, delimiter = line.partition("<<")
        if heredoc and (not sep or len(heredoc_key) < len(key)) and heredoc_key.strip() and delimiter.strip():
            outputs[heredoc_key.strip()], index = _heredoc(lines, index, delimiter.strip(), heredoc_key.strip())
        elif sep and key.strip():
            outputs[key.strip()] = value
    return outputs


def _heredoc(lines: list[str], start: int, delimiter: str, key: str) -> tuple[str, int]:
    """The value lines from `start` up to the closing delimiter, and the index after it."""
    for end in range(start, len(lines)):
        if lines[end] == delimiter:
            return "\n".join(lines[start:end]), end + 1
    raise OutputsError(f"$ORCHESTR_OUTPUT line {start}: '{key}<<{delimiter}' has no closing '{delimiter}' line "
                       f"(write the value's lines, then a line that is exactly {delimiter})")


class ShellRunner:
    def run(self, attempt: Attempt) -> ActionResult:
        spec = attempt.step.spec
        assert isinstance(spec, ShellStep)
        output_file = attempt.work_dir / f"{attempt.step.id}.{attempt.number}.outputs"
        output_file.parent.mkdir(parents=True, exist_ok=True)
        output_file.write_text("")
        env = {**attempt.env, "ORCHESTR_OUTPUT": str(output_file)}
        cwd = (attempt.root / spec.cwd) if spec.cwd else attempt.root
        if not cwd.is_dir():
            return ActionResult("error", error=f"cwd {spec.cwd!r} is not a folder in the project")

        finished = run_process(
            ["bash", "-c", BASH_PRELUDE + spec.run], cwd=cwd, env=env, timeout=attempt.timeout,
            registry=attempt.processes, on_stdout=_streamer(attempt, "stdout"), on_stderr=_streamer(attempt, "stderr"),
        )
        outputs, problem = _read_outputs(output_file, attempt)
        result = ActionResult("ok", exit_code=finished.exit_code, stdout_tail=finished.stdout, stderr_tail=finished.stderr,
                              outputs=outputs)
        if attempt.cancel.is_set():
            result.status, result.error = "cancelled", "cancelled"
        elif finished.timed_out:
            result.status, result.error = "timeout", f"timed out after {attempt.timeout:g}s; its process group was stopped"
        elif finished.exit_code != 0 and not _expects_exit_code(spec):
            result.status, result.error = "error", f"exited with code {finished.exit_code}" + _last_line(finished.stderr)
        elif problem is not None:
            result.status, result.error = "error", problem
        return result


def _streamer(attempt: Attempt, stream: Literal["stdout", "stderr"]) -> Callable[[str], None]:
    def emit(text: str) -> None:
        attempt.bus.log(LogLine(attempt.step.id, attempt.number, stream, text))

    return emit


def _expects_exit_code(spec: ShellStep) -> bool:
    """An `exit_code:` check takes over judging the exit status."""
    return any(hasattr(check, "exit_code") for check in spec.verify)


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return f": {lines[-1][:200]}" if lines else ""


def _read_outputs(path: Path, attempt: Attempt) -> tuple[dict[str, object], str | None]:
    """The outputs (or why they cannot be read); the file left on disk holds only redacted text."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}, None
    clean = attempt.bus.redactor.text(text)
    if clean != text:
        with contextlib.suppress(OSError):
            path.write_text(clean, encoding="utf-8")
    try:
        return parse_outputs(text), None
    except OutputsError as exc:
        return {}, str(exc)
