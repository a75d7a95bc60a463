"""`orchestr validate [PATH...]`"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestr.cli.common import STATE, Format, handle_errors, print_json, project
from orchestr.errors import ExitCode


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)


@handle_errors
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Files or project folders (default: the whole project).")] = None,
    format: Annotated[Format, typer.Option("--format", help="text or json.")] = Format.text,
) -> None:
    """Check workflows, contexts and config; every problem as file:line:col: message."""
    from orchestr.validation import validate_paths

    root = project().root if not paths or STATE.project_dir else Path.cwd()
    report = validate_paths(list(paths or []), default_root=root)
    if format is Format.json:
        print_json({
            "valid": report.ok,
            "workflows": report.workflows,
            "contexts": report.contexts,
            "diagnostics": [d.to_json() for d in report.diagnostics],
        })
    else:
        for diagnostic in report.diagnostics:
            typer.echo(diagnostic.format(), err=True)
        if report.ok:
            names = ", ".join(report.workflows) or "none"
            # typer.echo, not a Rich Console: building one cost more than the rest of this line
            typer.echo(typer.style("✓", fg="green") + f" valid: {len(report.workflows)} workflow(s) ({names}),"
                       f" {report.contexts} context node(s)")
        else:
            errors = sum(1 for d in report.diagnostics if d.severity == "error")
            typer.echo(f"{errors} error{'s' if errors != 1 else ''}", err=True)
    raise typer.Exit(ExitCode.OK if report.ok else ExitCode.INVALID)
