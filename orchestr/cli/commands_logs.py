"""`orchestr logs RUN [-f]` and `orchestr cancel RUN`."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestr.cli.common import console, handle_errors, project


def register(app: typer.Typer) -> None:
    app.command("logs")(logs)
    app.command("cancel")(cancel)


@handle_errors
def logs(
    run: Annotated[str, typer.Argument(help="Run id, a unique prefix, or `last`.")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing until the run ends; exit with its code.")] = False,
    output: Annotated[bool, typer.Option("--output/--no-output", help="Include the steps' output lines.")] = True,
) -> None:
    """A run's trace and its steps' output (scheduled runs too); -f follows a live run."""
    from orchestr.errors import UsageError
    from orchestr.observability.follow import RunFollower
    from orchestr.store import open_store

    store = open_store(project(), read_only=True)
    out = console()
    try:
        row = store.find_run(run)
        if row is None:
            raise UsageError(f"no run '{run}' (see `orchestr runs list`)")
        follower = RunFollower(store, row, output=output)
        if not follow:
            for line in follower.read():
                out.print(line, soft_wrap=True, highlight=False)
            return

        def running() -> bool:
            latest = store.run(row.id)
            return latest is not None and latest.effective_status == "running"

        for line in follower.follow(running=running):
            out.print(line, soft_wrap=True, highlight=False)
        final = store.run(row.id)
    finally:
        store.close()
    code = final.exit_code if final is not None and final.exit_code is not None else 1
    raise typer.Exit(code)


@handle_errors
def cancel(
    run: Annotated[str, typer.Argument(help="Run id, a unique prefix, or `last`.")],
    wait: Annotated[float, typer.Option("--wait", min=0, help="Seconds to wait for the run to stop.")] = 30.0,
) -> None:
    """Stop a running run (SIGTERM to its verified process): it records `cancelled` and exits 130."""
    from orchestr.errors import UsageError
    from orchestr.observability.cancel import cancel_run
    from orchestr.store import open_store

    store = open_store(project())
    try:
        row = store.find_run(run)
        if row is None:
            raise UsageError(f"no run '{run}' (see `orchestr runs list`)")
        latest = cancel_run(store, row, wait=wait)
    finally:
        store.close()
    if latest.status == "running":
        typer.echo(f"run {latest.id}: signalled pid {latest.pid}; still stopping after {wait:g}s", err=True)
        raise typer.Exit(1)
    typer.echo(f"run {latest.id} {latest.status} (exit {latest.exit_code})")
