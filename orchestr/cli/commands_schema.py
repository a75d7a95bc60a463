"""`orchestr schema [workflow|context|config] [--path]`"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from orchestr.cli.common import print_json


class SchemaKind(StrEnum):
    workflow = "workflow"
    context = "context"
    config = "config"


def register(app: typer.Typer) -> None:
    app.command("schema")(schema)


def schema(
    kind: Annotated[SchemaKind, typer.Argument(help="Which file's schema: workflow, context or config.",
                                               metavar="KIND")] = SchemaKind.workflow,
    path: Annotated[bool, typer.Option("--path", help="Print the installed schema file's path instead.")] = False,
) -> None:
    """Print the JSON Schema of a file kind, for editors (yaml-language-server) and CI."""
    if path:
        from orchestr.scaffold import installed_schema

        typer.echo(str(installed_schema(kind.value)))
        return
    from orchestr.schemas import json_schema

    print_json(json_schema(kind.value))
