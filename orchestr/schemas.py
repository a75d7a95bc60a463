"""JSON Schemas generated from the spec models (what `orchestr schema` prints and docs/schema holds)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from orchestr.models import ContextNodeSpec, ProjectConfig, WorkflowSpec, format_duration

MODELS: dict[str, tuple[type[BaseModel], str]] = {
    "workflow": (WorkflowSpec, "orchestr workflow (workflows/*.yaml)"),
    "context": (ContextNodeSpec, "orchestr context node (contexts/**/*.yaml)"),
    "config": (ProjectConfig, "orchestr project config (orchestr.yaml)"),
}


class _OrchestrSchema(GenerateJsonSchema):
    def encode_default(self, dft: Any) -> Any:
        # A duration's default as a file would write it ("24h"), not ISO 8601 ("P1D"), which the
        # schema's own pattern would reject.
        if isinstance(dft, timedelta):
            return format_duration(dft)
        return super().encode_default(dft)


def json_schema(kind: str) -> dict[str, Any]:
    model, title = MODELS[kind]
    schema = model.model_json_schema(by_alias=True, mode="validation", schema_generator=_OrchestrSchema)
    return {**schema, "$schema": "https://json-schema.org/draft/2020-12/schema", "title": title}
