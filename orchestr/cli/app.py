"""The Typer application: global options, command registration, error-to-exit-code mapping."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestr import __version__
from orchestr.cli import (
    commands_approvals,
    commands_context,
    commands_impact,
    commands_init,
    commands_lock,
    commands_logs,
    commands_plan,
    commands_run,
    commands_runs,
    commands_schedule,
    commands_schema,
    commands_state,
    commands_validate,
    completion,
)
from orchestr.cli.common import STATE
from orchestr.cli.help import OrchestrGroup

app = typer.Typer(
    name="orchestr",
    cls=OrchestrGroup,
    help="Run declarative, verified, scheduled AI-agent workflows from version-controlled YAML.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"orchestr {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    project: Annotated[
        Path | None,
        typer.Option("--project", "-C", help="Project folder (default: nearest with orchestr.yaml or workflows/).",
                     envvar="ORCHESTR_PROJECT"),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    STATE.project_dir = project


commands_init.register(app)
commands_validate.register(app)
commands_context.register(app)
commands_plan.register(app)
commands_run.register(app)
commands_runs.register(app)
commands_schedule.register(app)
commands_schema.register(app)
commands_state.register(app)
commands_impact.register(app)
commands_lock.register(app)
commands_logs.register(app)
completion.register(app)
commands_approvals.register(app)


def main() -> None:
    """Console-script entry point."""
    app()
