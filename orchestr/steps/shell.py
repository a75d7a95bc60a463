"""Shell steps: `run:` through bash with errexit and pipefail, values only as env vars."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from orchestr.events import LogLine
from orchestr.models import ShellStep
from orchestr.processes import run_process
from orchestr.steps.base import ActionResult, Attempt

BASH_PRELUDE = "set -eo pipefail\n"


def parse_outputs(text: str) -> dict[str, object]:
    """One JSON object, or `key=value` lines (the value is everything after the first `=`)."""
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, dict):
            return value
    outputs: dict[str, object] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip():
            outputs[key.strip()] = value
    return outputs


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
        result = ActionResult("ok", exit_code=finished.exit_code, stdout_tail=finished.stdout, stderr_tail=finished.stderr,
                              outputs=_read_outputs(output_file))
        if attempt.cancel.is_set():
            result.status, result.error = "cancelled", "cancelled"
        elif finished.timed_out:
            result.status, result.error = "timeout", f"timed out after {attempt.timeout:g}s; its process group was stopped"
        elif finished.exit_code != 0 and not _expects_exit_code(spec):
            result.status, result.error = "error", f"exited with code {finished.exit_code}" + _last_line(finished.stderr)
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


def _read_outputs(path: Path) -> dict[str, object]:
    try:
        return parse_outputs(path.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return {}
