"""`orchestr schema [workflow|context|config]`"""

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
    kind: Annotated[SchemaKind, typer.Argument(help="Which file's schema.")] = SchemaKind.workflow,
) -> None:
    """Print the JSON Schema of a file kind, for editors (yaml-language-server) and CI."""
    from orchestr.schemas import json_schema

    print_json(json_schema(kind.value))
