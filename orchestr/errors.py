"""One exception tree for every error a user can cause.

    OrchestrError                 exit_code, format()
     ├── ValidationFailed         2  one or more Diagnostics (file:line:col: message)
     ├── UsageError               2  a bad command line (unknown workflow, bad -i value, ...)
     ├── ConfigurationError       2  something missing before anything runs (an API key, ...)
     ├── StateError               1  the state store is unusable (corrupt, locked, read-only)
     ├── Busy                     75 another run holds the workflow's lock (or waits for an approval)
     ├── ApprovalRefused          1  a decision that cannot be recorded (decided already, content changed)
     └── NotWaiting               0  a decided run was resumed by another process first (nothing to do)

Real bugs are not OrchestrError and keep their traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    OK = 0
    FAILED = 1
    INVALID = 2
    UNVERIFIED = 3
    WAITING = 4  # the run stopped at an approval step; it holds no process (docs/approvals.md)
    BUSY = 75
    CANCELLED = 130


@dataclass(frozen=True, order=True)
class Span:
    """A place in a source file; line and column are 1-based."""

    file: str
    line: int = 0
    col: int = 0

    def __str__(self) -> str:
        if self.line <= 0:
            return self.file
        return f"{self.file}:{self.line}:{self.col}"

    @classmethod
    def of_file(cls, path: Path | str) -> Span:
        return cls(file=str(path))


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in the user's files."""

    span: Span
    message: str
    hint: str = ""
    severity: str = "error"  # "error" | "warning"

    def format(self) -> str:
        text = f"{self.span}: {self.severity}: {self.message}"
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_json(self) -> dict[str, object]:
        return {
            "file": self.span.file,
            "line": self.span.line,
            "col": self.span.col,
            "severity": self.severity,
            "message": self.message,
            "hint": self.hint,
        }


class OrchestrError(Exception):
    """Base of every user-facing error; carries its exit code."""

    exit_code: int = ExitCode.FAILED

    def format(self) -> str:
        return str(self)


class ValidationFailed(OrchestrError):
    exit_code = ExitCode.INVALID

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.span, d.message))
        super().__init__(self.format())

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def format(self) -> str:
        return "\n".join(d.format() for d in self.diagnostics)


class UsageError(OrchestrError):
    exit_code = ExitCode.INVALID


class ConfigurationError(OrchestrError):
    exit_code = ExitCode.INVALID


class StateError(OrchestrError):
    exit_code = ExitCode.FAILED


class Busy(OrchestrError):
    exit_code = ExitCode.BUSY


class ApprovalRefused(OrchestrError):
    exit_code = ExitCode.FAILED


class NotWaiting(OrchestrError):
    """The run is no longer waiting: someone else resumed it; the caller has nothing left to do."""

    exit_code = ExitCode.OK


def did_you_mean(word: str, choices: list[str] | tuple[str, ...] | set[str]) -> str:
    """A "did you mean 'x'?" suffix, or "" when nothing is close."""
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""
