"""Decode a positioned YAML Document into a spec model, with errors at `file:line:col`.

pydantic reports errors by `loc` through the *type*, which includes union tags ("shell", "str")
that are not keys in the file. We walk the model's type alongside the loc to recover the data
path (for the position) and the keys allowed there (for "did you mean").
"""

from __future__ import annotations

import difflib
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
    required = [f.alias or name for name, f in model.model_fields.items() if f.is_required()]
    keys = " and ".join(f"`{key}:`" for key in required)
    if doc.empty and not required:
        return model.model_validate({})
    if doc.empty:
        raise ValidationFailed([Diagnostic(doc.span(), f"file is empty: a {what} needs at least {keys}",
                                           hint=f"add {keys} (`orchestr schema` lists every key)")])
    if not isinstance(doc.data, dict):
        hint = f"start the file with its keys, e.g. {keys}" if keys else "write `key: value` lines"
        raise ValidationFailed(
            [Diagnostic(doc.span(), f"a {what} must be a YAML mapping of keys, got {_kind(doc.data)}", hint=hint)]
        )
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:
        raise ValidationFailed(_diagnostics(doc, model, [dict(err) for err in exc.errors()])) from None


def _diagnostics(doc: Document, model: type[BaseModel], errors: list[dict[str, Any]]) -> list[Diagnostic]:
    walked = [(err, *_walk(model, tuple(err["loc"]))) for err in errors if not _echo(err, errors)]
    # A misspelt required key yields "unknown 'titel'" and "missing 'title'": keep the first only.
    misspelt = {
        (path[:-1], close)
        for err, path, allowed, _ in walked
        if err["type"] == "extra_forbidden" and path and allowed
        for close in difflib.get_close_matches(str(path[-1]), sorted(allowed), n=1, cutoff=0.6)
    }
    problems: list[Diagnostic] = []
    alternatives: dict[PathKey, list[str]] = {}
    for err, path, allowed, in_union in walked:
        if err["type"] == "missing" and (path[:-1], path[-1]) in misspelt:
            continue
        if in_union and err["type"] in _EXPECTED:
            alternatives.setdefault(path, []).append(_EXPECTED[err["type"]])
            continue
        problems.append(_diagnostic(doc, err, path, allowed))
    for path, expected in alternatives.items():
        value = doc_value(doc, path)
        choices = [c for c in dict.fromkeys(_EXPECTED.values()) if c in expected]  # one order
        if "a number" in choices and "a whole number" in choices:
            choices.remove("a whole number")
        wanted = ", ".join(choices[:-1]) + (" or " if len(choices) > 1 else "") + choices[-1]
        problems.append(Diagnostic(doc.span(path), f"{_dotted(path)}: expected {wanted}, got {_got(value)}"))
    return _dedupe(problems)


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


_EXPECTED = {
    "string_type": "text",
    "bool_type": "a boolean (true or false)",
    "bool_parsing": "a boolean (true or false)",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "tuple_type": "a list",
    "list_type": "a list",
    "dict_type": "a mapping of keys",
    "model_type": "a mapping of keys",
    "model_attributes_type": "a mapping of keys",
}
_PATTERNS = {
    r"^[A-Za-z0-9_][A-Za-z0-9_-]*$": "use letters, digits, _ and -, not starting with -",
    r"^[A-Za-z_][A-Za-z0-9_]*$": "use letters, digits and _, not starting with a digit",
    r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$": "use letters, digits, _, . and -, not starting with . or -",
    r"^[A-Za-z0-9_.-]+$": "use letters, digits, _, . and -",
    r"^[A-Za-z0-9_-]+$": "use letters, digits, _ and -",
}
_BOUNDS = {"greater_than_equal": ("ge", "at least"), "greater_than": ("gt", "more than"),
           "less_than_equal": ("le", "at most"), "less_than": ("lt", "less than")}
_FIELD_HINTS = {
    "steps": "steps is a list; each step starts with `- id: NAME`",
    "needs": "a step id, or a list of them: needs: [fetch, test]",
    "attempts": "attempts counts every attempt, the first included: 1 runs once, 3 allows two retries",
}


def _got(value: object) -> str:
    """The offending value, shown when short, else its kind."""
    if isinstance(value, str) and len(value) <= 40 and "\n" not in value:
        return f"'{value}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float) and len(repr(value)) <= 20:
        return repr(value)
    return _kind(value)


def _diagnostic(doc: Document, err: dict[str, Any], path: PathKey, allowed: set[str] | None) -> Diagnostic:
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
    value = err.get("input", doc_value(doc, path))
    if path and path[-1] == "[key]":  # pydantic's marker for a mapping key that failed
        key_path = path[:-1]
        return Diagnostic(doc.key_span(key_path), f"{_dotted(key_path[:-1])}: key {_message(err, value)}")
    field = next((part for part in reversed(path) if isinstance(part, str)), "")
    hint = _FIELD_HINTS.get(field, "")
    if kind == "string_type" and isinstance(value, int | float):
        hint = f'quote it to make it text: "{_got(value)}"'
    return Diagnostic(doc.span(path), f"{where}: {_message(err, value)}", hint=hint)


def _message(err: dict[str, Any], value: object) -> str:
    kind = err["type"]
    ctx: dict[str, Any] = err.get("ctx") or {}
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {_got(value)}"
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        return f"must be {words} {ctx.get(key)}, got {_got(value)}"
    if kind == "too_short":
        count = ctx.get("min_length", 1)
        return f"needs at least {count} item{'s' if count != 1 else ''}"
    if kind == "string_too_short":
        return "must not be empty"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters long"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        return f"{_got(value)} is not allowed: {_PATTERNS.get(pattern, f'it must match {pattern}')}"
    if kind == "literal_error":
        expected = str(ctx.get("expected", ""))
        choices = [c.strip(" '") for c in expected.replace(" or ", ", ").split(",")]
        suggestion = did_you_mean(str(value), choices) if isinstance(value, str) else ""
        return f"{_got(value)} is not one of {expected}" + (f"; {suggestion}" if suggestion else "")
    message = str(err["msg"]).removeprefix("Value error, ")
    if kind in ("value_error", "assertion_error"):
        return message
    return f"{message} (got {_kind(value)})"


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
    if "steps" in path and "verify" not in path:
        return _step_problem(doc, path, value)
    where = _dotted(path)
    checks = f"checks: {', '.join(CHECK_KINDS)}"
    if not isinstance(value, dict):
        return Diagnostic(doc.span(path), f"{where}: expected a check like `file_exists: PATH`, got {_got(value)}",
                          hint=checks)
    unknown = [k for k in value if k not in CHECK_KINDS]
    message = f"{where}: each check is one of {', '.join(CHECK_KINDS)}"
    if unknown:
        suggestion = did_you_mean(str(unknown[0]), CHECK_KINDS)
        message = f"{where}: unknown check '{unknown[0]}'" + (f"; {suggestion}" if suggestion else "")
    elif len(value) > 1:
        message = f"{where}: write one check per list item, got {', '.join(value)}"
    return Diagnostic(doc.span(path), message, hint=checks)


def _step_problem(doc: Document, path: PathKey, value: object) -> Diagnostic:
    where = _dotted(path)
    keys = ("run", "agent", "approval")
    if not isinstance(value, dict):
        return Diagnostic(doc.span(path), f"{where}: expected a step (a mapping with `id:` and `run:`, `agent:` "
                          f"or `approval:`), got {_got(value)}", hint="write `- id: NAME` and, below it, `run: COMMAND`")
    present = [k for k in keys if k in value]
    if len(present) > 1:
        return Diagnostic(doc.span(path), f"{where}: a step has one of `run:`, `agent:` or `approval:`, "
                          f"not {' and '.join(f'`{k}:`' for k in present)}",
                          hint="split it into one step per kind, joined by `needs:`")
    close = [hint for k in value if k not in keys and (hint := did_you_mean(str(k), keys))]
    return Diagnostic(
        doc.span(path),
        f"{where}: a step needs `run:` (a shell step), `agent:` (an agent step) or `approval:` (a person decides)"
        + (f"; {close[0]}" if close else ""),
        hint="add `run: COMMAND`, or `agent: NAME` and `prompt: ...`, or `approval: {message: ...}`",
    )


def _walk(model: type[BaseModel], loc: PathKey) -> tuple[PathKey, set[str] | None, bool]:
    """Follow `loc` through `model`'s type: the data path, the keys allowed at its end, and
    whether it went through a plain union (whose members' errors are alternatives)."""
    path: list[str | int] = []
    tp: Any = model
    allowed: set[str] | None = None
    in_union = False
    for part in loc:
        tp, tagged = _unwrap(tp)
        if tagged is not None:
            tp = tagged.get(str(part), Any)
            tp, _ = _unwrap(tp)
            if str(part) in tagged:
                continue
        if get_origin(tp) in (Union, types.UnionType):
            # pydantic names the member it tried ("str", "int"): not a key in the file.
            tp, in_union = Any, True
            continue
        allowed = _fields(tp)
        path.append(part)
        tp = _child(tp, part)
    return tuple(path), allowed, in_union


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
