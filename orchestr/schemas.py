"""JSON Schemas generated from the spec models (what `orchestr schema` prints and docs/schema holds)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from orchestr.models import ContextNodeSpec, ProjectConfig, WorkflowSpec

MODELS: dict[str, tuple[type[BaseModel], str]] = {
    "workflow": (WorkflowSpec, "orchestr workflow (workflows/*.yaml)"),
    "context": (ContextNodeSpec, "orchestr context node (contexts/**/*.yaml)"),
    "config": (ProjectConfig, "orchestr project config (orchestr.yaml)"),
}


def json_schema(kind: str) -> dict[str, Any]:
    model, title = MODELS[kind]
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return {**schema, "$schema": "https://json-schema.org/draft/2020-12/schema", "title": title}
