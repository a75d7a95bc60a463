"""Decode a positioned YAML Document into a spec model, with errors at `file:line:col`.

pydantic reports errors by `loc` through the *type*, which includes union tags ("shell", "str")
that are not keys in the file. We walk the model's type alongside the loc to recover the data
path (for the position) and the keys allowed there (for "did you mean").
"""

from __future__ import annotations

import types
import typing
from typing import Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, Discriminator, Tag, ValidationError

from orchestr.errors import Diagnostic, ValidationFailed, did_you_mean
from orchestr.models import CHECK_KINDS
from orchestr.source import Document, PathKey

M = TypeVar("M", bound=BaseModel)


def decode(doc: Document, model: type[M], *, what: str) -> M:
    """Validate `doc.data` as `model`; raise ValidationFailed listing every problem."""
    if not isinstance(doc.data, dict):
        raise ValidationFailed(
            [Diagnostic(doc.span(), f"a {what} must be a YAML mapping of keys, got {_kind(doc.data)}")]
        )
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        errors = [dict(err) for err in exc.errors()]
        problems = [_diagnostic(doc, model, err) for err in errors if not _echo(err, errors)]
        raise ValidationFailed(_dedupe(problems)) from None


def _echo(err: dict[str, Any], errors: list[dict[str, Any]]) -> bool:
    """pydantic adds "too short" for a list whose items failed; the item errors say it all."""
    loc = tuple(err["loc"])
    return err["type"] == "too_short" and any(
        len(o["loc"]) > len(loc) and tuple(o["loc"][: len(loc)]) == loc for o in errors
    )


def _dedupe(problems: list[Diagnostic]) -> list[Diagnostic]:
    seen: set[tuple[str, str]] = set()
    kept = []
    for problem in problems:
        key = (str(problem.span), problem.message)
        if key not in seen:
            seen.add(key)
            kept.append(problem)
    return kept


def _kind(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string"


def _dotted(path: PathKey) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text or "the top level"


def _diagnostic(doc: Document, model: type[BaseModel], err: dict[str, Any]) -> Diagnostic:
    path, allowed = _walk(model, tuple(err["loc"]))
    kind = err["type"]
    where = _dotted(path)
    if kind == "extra_forbidden":
        key = str(path[-1]) if path else "?"
        suggestion = did_you_mean(key, allowed or set())
        return Diagnostic(
            doc.key_span(path),
            f"unknown key '{key}' in {_dotted(path[:-1])}" + (f"; {suggestion}" if suggestion else ""),
            hint=f"allowed keys: {', '.join(sorted(allowed))}" if allowed else "remove it",
        )
    if kind == "missing":
        return Diagnostic(
            doc.span(path[:-1]),
            f"missing required key '{path[-1]}' in {_dotted(path[:-1])}",
            hint=f"add `{path[-1]}:`",
        )
    if kind in ("union_tag_not_found", "union_tag_invalid"):
        return _tag_problem(doc, path, doc_value(doc, path))
    message = str(err["msg"]).removeprefix("Value error, ")
    return Diagnostic(doc.span(path), f"{where}: {message} (got {_kind(err.get('input'))})")


def doc_value(doc: Document, path: PathKey) -> object:
    value: object = doc.data
    for part in path:
        if isinstance(value, dict) and isinstance(part, str):
            value = value.get(part)
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            return None
    return value


def _tag_problem(doc: Document, path: PathKey, value: object) -> Diagnostic:
    where = _dotted(path)
    if "steps" in path and "verify" not in path:
        keys = [k for k in value if isinstance(k, str)] if isinstance(value, dict) else []
        close = [hint for k in keys if (hint := did_you_mean(k, ("run", "agent"))) and k not in ("run", "agent")]
        if "run" in keys and "agent" in keys:
            message = f"{where}: a step has either `run:` or `agent:`, not both"
        else:
            message = f"{where}: a step needs `run:` (a shell step) or `agent:` (an agent step)"
            message += f"; {close[0]}" if close else ""
        return Diagnostic(doc.span(path), message, hint="split it into two steps if it does both")
    keys = list(value) if isinstance(value, dict) else []
    unknown = [k for k in keys if k not in CHECK_KINDS]
    suggestion = did_you_mean(unknown[0], CHECK_KINDS) if unknown else ""
    message = f"{where}: each check is one of {', '.join(CHECK_KINDS)}"
    if unknown:
        message = f"{where}: unknown check '{unknown[0]}'" + (f"; {suggestion}" if suggestion else "")
    elif len(keys) > 1:
        message = f"{where}: write one check per list item, got {', '.join(keys)}"
    return Diagnostic(doc.span(path), message, hint=f"checks: {', '.join(CHECK_KINDS)}")


def _walk(model: type[BaseModel], loc: PathKey) -> tuple[PathKey, set[str] | None]:
    """Follow `loc` through `model`'s type: the data path, and the keys allowed at its end."""
    path: list[str | int] = []
    tp: Any = model
    allowed: set[str] | None = None
    for part in loc:
        tp, tagged = _unwrap(tp)
        if tagged is not None:
            tp = tagged.get(str(part), Any)
            tp, _ = _unwrap(tp)
            if str(part) in tagged:
                continue
        allowed = _fields(tp)
        path.append(part)
        tp = _child(tp, part)
    return tuple(path), allowed


def _unwrap(tp: Any) -> tuple[Any, dict[str, Any] | None]:
    """Strip Annotated/Optional; for a tagged union return its members by tag."""
    while True:
        origin = get_origin(tp)
        if origin is typing.Annotated:
            inner, *meta = get_args(tp)
            if any(isinstance(m, Discriminator) for m in meta):
                return inner, _tags(inner)
            tp = inner
            continue
        if origin in (Union, types.UnionType):
            members = [a for a in get_args(tp) if a is not type(None)]
            if len(members) == 1:
                tp = members[0]
                continue
            models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
            return (models[0] if len(models) == 1 else tp), None
        return tp, None


def _tags(union: Any) -> dict[str, Any]:
    tags: dict[str, Any] = {}
    for member in get_args(union):
        inner, *meta = get_args(member) if get_origin(member) is typing.Annotated else (member,)
        for m in meta:
            if isinstance(m, Tag):
                tags[m.tag] = inner
    return tags


def _fields(tp: Any) -> set[str] | None:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return {f.alias or name for name, f in tp.model_fields.items()}
    return None


def _child(tp: Any, part: str | int) -> Any:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, field in tp.model_fields.items():
            if part in (name, field.alias):
                return field.annotation
        return Any
    origin = get_origin(tp)
    args = get_args(tp)
    if origin in (list, tuple) and args:
        return args[0]
    if origin is dict and len(args) == 2:
        return args[1]
    return Any
