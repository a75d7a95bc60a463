"""`orchestr plan WORKFLOW [--format text|mermaid|dot|json]`"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from orchestr.cli.common import console, handle_errors, print_json, project
from orchestr.cli.completion import complete_workflow


class PlanFormat(StrEnum):
    text = "text"
    mermaid = "mermaid"
    dot = "dot"
    json = "json"


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)


@handle_errors
def plan(
    workflow: Annotated[str, typer.Argument(help="A workflow's name or its file's path.", metavar="WORKFLOW",
                                             autocompletion=complete_workflow)],
    format: Annotated[PlanFormat, typer.Option("--format")] = PlanFormat.text,
) -> None:
    """Show the compiled step graph, with each step's context and permissions."""
    from orchestr import plan_formats
    from orchestr.compiler import compile_workflow

    proj = project()
    compiled = compile_workflow(proj.find_workflow(workflow), proj.tree, proj.config)
    if format is PlanFormat.json:
        print_json(plan_formats.to_json(compiled))
    elif format is PlanFormat.mermaid:
        typer.echo(plan_formats.to_mermaid(compiled), nl=False)
    elif format is PlanFormat.dot:
        typer.echo(plan_formats.to_dot(compiled), nl=False)
    else:
        from orchestr.render import render_plan

        out = console()
        out.print(render_plan(compiled, width=out.width))
