"""`orchestr impact [--base REF] [--format text|markdown|json] [--fail-on permissions|any]`"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from orchestr.cli.common import handle_errors, print_json, project


class ImpactFormat(StrEnum):
    text = "text"
    markdown = "markdown"
    json = "json"


class FailOn(StrEnum):
    permissions = "permissions"
    any = "any"


def register(app: typer.Typer) -> None:
    app.command("impact")(impact)


@handle_errors
def impact(
    base: Annotated[str, typer.Option("--base", help="The git REF to compare with (branch, tag, commit).")] = "HEAD",
    format: Annotated[ImpactFormat, typer.Option("--format", help="text, markdown (PR comments) or json.")] = ImpactFormat.text,
    fail_on: Annotated[FailOn | None, typer.Option(
        "--fail-on", help="Exit 1 when a permission widens (`permissions`) or anything changed (`any`).")] = None,
) -> None:
    """What a change does to the agents: every step whose effective prompt, permissions, tools,
    model, MCP servers or checks differ between REF and the working tree."""
    from orchestr.review.impact import compare
    from orchestr.review.report import impact_json, render_markdown, render_text
    from orchestr.review.snapshot import checkout, load_snapshot

    proj = project()
    head = load_snapshot(proj)
    with checkout(proj.root, base) as at_base:
        found = compare(load_snapshot(at_base, label=base, display=f"{base}:", strict=False), head)
    if format is ImpactFormat.json:
        print_json(impact_json(found))
    else:
        typer.echo(render_markdown(found) if format is ImpactFormat.markdown else render_text(found), nl=False)
    failed = (fail_on is FailOn.permissions and bool(found.widened)) or (fail_on is FailOn.any and not found.empty)
    raise typer.Exit(1 if failed else 0)
