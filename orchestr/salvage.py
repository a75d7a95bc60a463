"""Every independent error of a workflow in one `validate`, not in waves.

A duplicate key stops the strict load, and a value of the wrong shape stops decoding, so the
compiler's checks (cron, time zone, agents, expressions) would only be reached in a later round.
Here the file is loaded again leniently (first of duplicate keys kept), its decode errors are
reported, and then the values that failed are dropped, one round at a time, until the rest decodes
and can be compiled. A required key that fails ends the salvage: nothing reliable is left to check.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from orchestr.errors import Diagnostic, Span, ValidationFailed
from orchestr.models import WorkflowSpec
from orchestr.project import LoadedWorkflow, display_path
from orchestr.source import PathKey, load_yaml
from orchestr.spec import _echo, _walk, decode

MAX_ROUNDS = 20


@dataclass(frozen=True)
class Salvage:
    problems: list[Diagnostic]  # the lenient load's decode errors
    workflow: LoadedWorkflow | None  # what still decodes once the failing values are dropped
    masked: frozenset[Span]  # where a dropped value, or a mapping holding one, is written

    def keeps(self, diagnostic: Diagnostic) -> bool:
        """A compile error at a dropped value's place may only be a consequence of dropping it."""
        return diagnostic.span not in self.masked


def salvage_workflow(path: Path) -> Salvage:
    display = display_path(path)
    try:
        doc = load_yaml(path, display=display, lenient=True)
    except ValidationFailed:
        return Salvage([], None, frozenset())
    try:
        return Salvage([], _loaded(path, display, doc, decode(doc, WorkflowSpec, what="workflow")), frozenset())
    except ValidationFailed as exc:
        problems = list(exc.diagnostics)
    if not isinstance(doc.data, dict):
        return Salvage(problems, None, frozenset())
    data = copy.deepcopy(doc.data)
    dropped: list[PathKey] = []
    for _ in range(MAX_ROUNDS):
        try:
            spec = WorkflowSpec.model_validate(data)
        except ValidationError as exc:
            errors: list[dict[str, Any]] = [dict(err) for err in exc.errors()]
            paths = [_drop(data, tuple(e["loc"]), e["type"]) for e in errors if not _echo(e, errors)]
            if not paths or any(p is None for p in paths):
                return Salvage(problems, None, frozenset())
            dropped += [p for p in paths if p is not None]
            continue
        masked = {span for at in dropped for end in range(len(at) + 1)
                  for span in (doc.span(at[:end]), doc.key_span(at[:end]))}
        return Salvage(problems, _loaded(path, display, doc, spec), frozenset(masked))
    return Salvage(problems, None, frozenset())


def _loaded(path: Path, display: str, doc: object, spec: WorkflowSpec) -> LoadedWorkflow:
    from orchestr.source import Document

    assert isinstance(doc, Document)
    return LoadedWorkflow(spec.name or path.stem, path, display, spec, doc)


def _drop(data: dict[str, object], loc: PathKey, kind: str) -> PathKey | None:
    """Remove the value at pydantic's `loc` (a whole list if it is a list item): its path, or None."""
    if kind == "missing":
        return None
    path, _, _ = _walk(WorkflowSpec, loc)
    while path and isinstance(path[-1], int):
        path = path[:-1]
    if not path:
        return None
    parent: object = data
    for part in path[:-1]:
        if isinstance(parent, dict) and isinstance(part, str):
            parent = parent.get(part)
        elif isinstance(parent, list) and isinstance(part, int) and part < len(parent):
            parent = parent[part]
        else:
            return None
    if not isinstance(parent, dict) or path[-1] not in parent:
        return None
    del parent[path[-1]]
    return path
