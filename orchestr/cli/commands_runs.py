"""`orchestr runs [list|show RUN|prune --older-than AGE]`"""

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
    from orchestr.store import open_store

    store = open_store(project(), read_only=True)
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
    from orchestr.store import open_store

    store = open_store(project(), read_only=True)
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


@runs_app.command("prune")
@handle_errors
def prune(
    older_than: Annotated[str, typer.Option("--older-than", help="Age of the runs to forget, e.g. 30d, 12h.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be pruned.")] = False,
    format: Annotated[Format, typer.Option("--format")] = Format.text,
) -> None:
    """Forget runs started before --older-than ago: their steps, attempts, events and work folders.

    Kept whatever their age: a run in progress, each workflow's newest run, and runs the schedule
    ledger still reports on; the ledger itself is never pruned.
    """
    from datetime import timedelta

    from orchestr.errors import UsageError
    from orchestr.events import iso, utc_now
    from orchestr.models import parse_duration
    from orchestr.prune import prune_runs
    from orchestr.store import open_store

    try:
        age = parse_duration(older_than)
    except ValueError as exc:
        raise UsageError(f"--older-than: {exc}") from None
    assert isinstance(age, timedelta)
    cutoff = utc_now() - age
    store = open_store(project())
    try:
        result = prune_runs(store, before=cutoff, dry_run=dry_run)
    finally:
        store.close()
    if format is Format.json:
        print_json({"before": iso(cutoff), "dry_run": dry_run, "pruned": list(result.pruned),
                    "kept": list(result.kept), "work_folders_removed": result.folders})
        return
    verb = "would prune" if dry_run else "pruned"
    typer.echo(f"{verb} {len(result.pruned)} run(s) started before {iso(cutoff)}"
               + (f"; kept {len(result.kept)} older run(s) still in use (in progress, newest of its workflow,"
                  " or read by the schedule ledger)" if result.kept else ""))
