"""`orchestr init [DIR]`"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestr.cli.common import console, handle_errors


def register(app: typer.Typer) -> None:
    app.command("init")(init)


@handle_errors
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in (default: here).",
                                              metavar="DIR")] = Path("."),
    force: Annotated[bool, typer.Option("--force", help="Replace files that already exist.")] = False,
) -> None:
    """Create a minimal project: a context node, a shell and an agent workflow, orchestr.yaml."""
    from orchestr.scaffold import write_scaffold

    root = directory.resolve()
    written = write_scaffold(root, force=force)
    out = console()
    for path in written:
        out.print(f"  wrote {path.relative_to(root).as_posix()}", soft_wrap=True)
    where = "" if root == Path.cwd().resolve() else f"cd {directory} && "
    out.print(f"[green]✓[/] project ready in {root}", soft_wrap=True)
    out.print(f"next: {where}orchestr run hello    (no API key needed)", soft_wrap=True)
    out.print("      orchestr run summarize    (needs ANTHROPIC_API_KEY, in the environment or .env)",
              soft_wrap=True)
