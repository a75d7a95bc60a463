"""`orchestr state info|migrate`: which store holds the records, its schema, and moving it forward."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestr.cli.common import Format, handle_errors, print_json, project

state_app = typer.Typer(help="The state store: where run records and the ledger live (docs/state.md).",
                        no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(state_app, name="state")


@state_app.command("info")
@handle_errors
def info(format: Annotated[Format, typer.Option("--format")] = Format.text) -> None:
    """Backend, URL (password hidden), schema version and row counts."""
    from orchestr.store import open_store, state_url

    proj = project()
    store = open_store(proj, read_only=True)
    try:
        facts = store.info()
    finally:
        store.close()
    where = state_url(proj)[1]
    if format is Format.json:
        print_json({**facts.to_json(), "configured_by": where})
        return
    typer.echo(f"backend: {facts.backend} (configured by: {where})")
    typer.echo(f"url: {facts.url}")
    typer.echo(f"schema version: {facts.schema_version} (this orchestr: {facts.current_version})")
    for table, count in facts.counts.items():
        typer.echo(f"{table}: {count}")


@state_app.command("migrate")
@handle_errors
def migrate() -> None:
    """Bring the state database to this orchestr's schema (back it up first); a no-op when current."""
    from orchestr.store import open_store

    store = open_store(project(), migrating=True)
    try:
        before, after = store.migrate()
        url = store.url
    finally:
        store.close()
    if before == after:
        typer.echo(f"{url}: schema version {after}, already current")
    else:
        typer.echo(f"{url}: migrated schema version {before or 'none'} -> {after}")
