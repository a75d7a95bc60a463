"""Verification: deterministic checks decide whether a step did its job, never the model's word."""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, assert_never

from orchestr.expressions import ExpressionError, condition_source, evaluate, render_text, truthy
from orchestr.models import (
    Check,
    CommandCheck,
    ExitCodeCheck,
    ExprCheck,
    FileContainsCheck,
    FileExistsCheck,
    JsonSchemaCheck,
    ToolCalledCheck,
)
from orchestr.processes import ProcessRegistry, run_process
from orchestr.steps.base import ActionResult, CheckResult

SCHEMA_INVALID = "the schema itself is invalid"


@dataclass(frozen=True)
class CheckContext:
    root: Path
    scope: Mapping[str, object]
    env: Mapping[str, str]
    processes: ProcessRegistry | None = None


def run_checks(checks: tuple[Check, ...], result: ActionResult, ctx: CheckContext) -> list[CheckResult]:
    return [run_check(check, result, ctx) for check in checks]


def run_check(check: Check, result: ActionResult, ctx: CheckContext) -> CheckResult:
    try:
        return _run(check, result, ctx)
    except ExpressionError as exc:
        # Not permanent: a check's expression reads the attempt's own outputs, which the next
        # attempt may produce.
        return CheckResult(_kind(check), "", False, f"expression error: {exc}")


def _kind(check: Check) -> str:
    from orchestr.models import check_kind

    return check_kind(check)


def _run(check: Check, result: ActionResult, ctx: CheckContext) -> CheckResult:
    match check:
        case ExitCodeCheck(exit_code=expected):
            got = result.exit_code
            return CheckResult("exit_code", str(expected), got == expected,
                               f"exit code {got}" + ("" if got == expected else f", expected {expected}"))
        case FileExistsCheck(file_exists=raw):
            path = render_text(raw, ctx.scope)
            found = (ctx.root / path).exists()
            return CheckResult("file_exists", path, found, "exists" if found else f"{path} does not exist")
        case FileContainsCheck(file_contains=spec):
            return _file_contains(render_text(spec.path, ctx.scope), spec.pattern, ctx)
        case JsonSchemaCheck(json_schema=spec):
            return _json_schema(spec.path, spec.schema_, result, ctx)
        case CommandCheck():
            return _command(check, ctx)
        case ExprCheck(expr=text):
            value = evaluate(condition_source(text), ctx.scope)
            return CheckResult("expr", text, truthy(value), f"evaluated to {value!r}")
        case ToolCalledCheck(tool_called=spec):
            return _tool_called(spec.name, spec.args, result)
        case _:
            assert_never(check)


def _file_contains(path: str, pattern: str, ctx: CheckContext) -> CheckResult:
    target = f"{path} ~ /{pattern}/"
    try:
        text = (ctx.root / path).read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        return CheckResult("file_contains", target, False, f"cannot read {path}: {exc.strerror}")
    try:
        found = re.search(pattern, text, re.MULTILINE) is not None
    except re.error as exc:
        return CheckResult("file_contains", target, False, f"invalid pattern: {exc}", permanent=True)
    return CheckResult("file_contains", target, found, "pattern found" if found else f"pattern not found in {path}")


def _load_schema(schema: str | dict[str, Any], root: Path) -> dict[str, Any]:
    if isinstance(schema, dict):
        return schema
    loaded = json.loads((root / schema).read_text(encoding="utf-8"))
    if not isinstance(loaded, dict):
        raise ValueError(f"{schema} does not hold a JSON Schema object")
    return loaded


def _json_schema(path: str | None, schema: str | dict[str, Any], result: ActionResult, ctx: CheckContext) -> CheckResult:
    target = path or "structured output"
    try:
        schema_doc = _load_schema(schema, ctx.root)
    except (OSError, ValueError) as exc:  # the check's own schema: no attempt can fix it
        return CheckResult("json_schema", target, False, f"cannot load the schema: {exc}", permanent=True)
    try:
        if path is None:
            instance = result.output if result.output is not None else result.outputs
        else:
            instance = json.loads((ctx.root / render_text(path, ctx.scope)).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return CheckResult("json_schema", target, False, f"cannot load: {exc}")
    problem = schema_problem(instance, schema_doc)
    broken = problem is not None and problem.startswith(SCHEMA_INVALID)
    return CheckResult("json_schema", target, problem is None, problem or "valid", permanent=broken)


def schema_problem(instance: object, schema: dict[str, Any]) -> str | None:
    """The first validation error, as `at $.path: message`, or None when valid."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    try:
        validator = Draft202012Validator(schema)
        errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    except SchemaError as exc:
        return f"{SCHEMA_INVALID}: {exc.message}"
    if not errors:
        return None
    first = errors[0]
    where = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.absolute_path)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"at {where}: {first.message}{more}"


def _command(check: CommandCheck, ctx: CheckContext) -> CheckResult:
    timeout = check.timeout.total_seconds()
    finished = run_process(["bash", "-c", "set -eo pipefail\n" + check.command], cwd=ctx.root, env=ctx.env,
                           timeout=timeout, registry=ctx.processes)
    if finished.timed_out:
        return CheckResult("command", check.command, False, f"check timed out after {timeout:g}s and was stopped")
    tail = (finished.stderr or finished.stdout).strip().splitlines()
    detail = f"exit code {finished.exit_code}" + (f": {tail[-1][:200]}" if tail and finished.exit_code else "")
    return CheckResult("command", check.command, finished.exit_code == 0, detail)


def _normalise(value: object) -> object:
    if isinstance(value, str) and "/" in value:
        return posixpath.normpath(value)
    return value


def _tool_called(name: str, args: Mapping[str, Any], result: ActionResult) -> CheckResult:
    target = name + (f" {json.dumps(args, sort_keys=True)}" if args else "")
    for call in result.tool_calls:
        if call.tool != name or call.outcome != "ok":
            continue
        if all(_normalise(call.args.get(k)) == _normalise(v) for k, v in args.items()):
            return CheckResult("tool_called", target, True, "matching call found")
    calls = [c.tool for c in result.tool_calls if c.outcome == "ok"]
    return CheckResult("tool_called", target, False,
                       f"no successful call matched; calls made: {', '.join(calls) or 'none'}")
