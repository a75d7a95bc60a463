"""`orchestr lock [--check]`"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from orchestr.cli.common import console, handle_errors, project


def register(app: typer.Typer) -> None:
    app.command("lock")(lock)


@handle_errors
def lock(
    check: Annotated[bool, typer.Option("--check", help="Write nothing; exit 1 naming each stale step.")] = False,
) -> None:
    """Write orchestr.lock: each agent step's model, tools, permissions, servers and prompt sha256."""
    from orchestr.review import lockfile
    from orchestr.review.snapshot import load_snapshot

    proj = project()
    current = lockfile.entries(load_snapshot(proj))
    path = proj.root / lockfile.LOCK_FILE
    if check:
        try:
            locked = lockfile.read(path)
        except lockfile.LockUnreadable as exc:
            _stale([str(exc)])
        if locked is None:
            _stale([f"{lockfile.LOCK_FILE} does not exist"])
        problems = lockfile.stale(locked, current)
        if problems or path.read_text(encoding="utf-8") != lockfile.render(current):
            _stale(problems or [f"{lockfile.LOCK_FILE} is not formatted as `orchestr lock` writes it"])
        console().print(f"{lockfile.LOCK_FILE} is up to date ({len(current)} agent steps)")
        return
    text = lockfile.render(current)
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        console().print(f"{lockfile.LOCK_FILE} is up to date ({len(current)} agent steps)")
        return
    path.write_text(text, encoding="utf-8")
    console().print(f"wrote {lockfile.LOCK_FILE} ({len(current)} agent steps)")


def _stale(lines: list[str]) -> NoReturn:
    from orchestr.review.lockfile import LOCK_FILE

    for line in lines:
        typer.echo(f"stale: {line}", err=True)
    typer.echo(f"{LOCK_FILE} does not match the project: run `orchestr lock`, review the diff and commit it", err=True)
    raise typer.Exit(1)
