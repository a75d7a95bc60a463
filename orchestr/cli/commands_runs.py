"""`orchestr runs [list|show RUN]`"""

from __future__ import annotations

from typing import Annotated

import typer

from orchestr.cli.common import Format, console, handle_errors, print_json, project
from orchestr.cli.completion import complete_run

runs_app = typer.Typer(help="Run history: steps, attempts, tool calls, verification, tokens.", invoke_without_command=True)


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")


@runs_app.callback()
def _default(
    ctx: typer.Context,
    workflow: Annotated[str | None, typer.Option("--workflow", "-w", help="Only this workflow.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n")] = 20,
    format: Annotated[Format, typer.Option("--format")] = Format.text,
) -> None:
    """Bare `orchestr runs` is `orchestr runs list` (with the same options)."""
    if ctx.invoked_subcommand is None:
        list_runs(workflow=workflow, limit=limit, format=format)


@runs_app.command("list")
@handle_errors
def list_runs(
    workflow: Annotated[str | None, typer.Option("--workflow", "-w", help="Only this workflow.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n")] = 20,
    format: Annotated[Format, typer.Option("--format")] = Format.text,
) -> None:
    """List recent runs, newest first."""
    from orchestr.records import run_summary, runs_table
    from orchestr.store import Store

    store = Store(project().state_dir)
    try:
        rows = store.runs(workflow=workflow, limit=limit)
        if format is Format.json:
            print_json([run_summary(r) for r in rows])
        else:
            console().print(runs_table(rows))
    finally:
        store.close()


@runs_app.command("show")
@handle_errors
def show(
    run: Annotated[str, typer.Argument(help="Run id, a unique prefix, or `last`.", metavar="RUN", autocompletion=complete_run)],
    format: Annotated[Format, typer.Option("--format")] = Format.text,
) -> None:
    """Show one run: steps, attempts, tool calls, verification and tokens."""
    from orchestr.errors import UsageError
    from orchestr.records import run_detail, run_tree
    from orchestr.store import Store

    store = Store(project().state_dir)
    try:
        row = store.find_run(run)
        if row is None:
            raise UsageError(f"no run '{run}' (see `orchestr runs list`)")
        detail = run_detail(store, row)
        if format is Format.json:
            print_json(detail)
        else:
            console().print(run_tree(detail))
    finally:
        store.close()
