"""What every command shares: the project, the consoles, and turning errors into exit codes."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, ParamSpec, TypeVar

import typer

from orchestr.errors import OrchestrError, ValidationFailed

if TYPE_CHECKING:
    from rich.console import Console

    from orchestr.project import Project

P = ParamSpec("P")
R = TypeVar("R")


class Format(StrEnum):
    text = "text"
    json = "json"


@dataclass
class _State:
    project_dir: Path | None = None


STATE = _State()


def project() -> Project:
    from orchestr.project import Project, find_root

    return Project(find_root(STATE.project_dir or Path.cwd()))


PIPE_WIDTH = 120  # Rich's 80 columns truncates tables in CI logs and pipes


def console(*, stderr: bool = False) -> Console:
    import os

    from rich.console import Console

    out = Console(stderr=stderr, highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out.width = PIPE_WIDTH
    return out


def print_json(value: object) -> None:
    typer.echo(json.dumps(value, indent=2, sort_keys=False, default=str))


def fail(exc: OrchestrError) -> NoReturn:
    if isinstance(exc, ValidationFailed):
        for diagnostic in exc.diagnostics:
            typer.echo(diagnostic.format(), err=True)
        count = len(exc.errors)
        if count:
            typer.echo(f"{count} error{'s' if count != 1 else ''}", err=True)
    else:
        typer.echo(f"error: {exc.format()}", err=True)
    raise typer.Exit(int(exc.exit_code))


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """User errors become a message and their exit code; bugs keep their traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except OrchestrError as exc:
            fail(exc)

    return wrapper
