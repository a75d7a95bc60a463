"""`${{ ... }}` expressions: parsed and checked at compile time, evaluated in a sandbox at run time.

The grammar is Jinja's expression language (`steps.fetch.outputs.count | int > 0`,
`inputs.mode == "full" and not vars.dry_run`), evaluated by jinja2's SandboxedEnvironment with
StrictUndefined: no attribute access to Python internals, no silent empty strings. GitHub Actions'
`&&`, `||` and `!` are read as `and`, `or` and `not`, and an `if:` may call the status functions
`success()`, `failure()`, `always()` and `cancelled()` (the engine binds them).
A value never becomes shell source: callers pass rendered values to shells as env vars only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from orchestr.errors import did_you_mean

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
ROOTS = ("inputs", "vars", "env", "steps")
STATUS_FUNCTIONS = ("success", "failure", "always", "cancelled")


class ExpressionError(Exception):
    """An expression that does not parse or cannot be evaluated."""


@dataclass(frozen=True)
class Problem:
    """Something an expression gets wrong that parsing alone does not catch."""

    message: str
    hint: str


@dataclass(frozen=True)
class Analysis:
    """What an expression reads, which status functions it calls, and what is wrong with it."""

    refs: tuple[Ref, ...]
    status_calls: frozenset[str]
    problems: tuple[Problem, ...]


@dataclass(frozen=True)
class Ref:
    """A reference like `steps.fetch.outputs.count`: its root and the constant path after it."""

    root: str
    path: tuple[str, ...]
    offset: int  # where in the source text the expression starts

    def __str__(self) -> str:
        return ".".join((self.root, *self.path))


def find(text: str) -> list[tuple[int, str]]:
    """Every `${{ expr }}` in text, as (offset, expr)."""
    return [(m.start(), m.group(1).strip()) for m in EXPRESSION.finditer(text)]


def condition_source(text: str) -> str:
    """An `if:` may be `${{ expr }}` or a bare expression (as in GitHub Actions)."""
    found = find(text)
    if len(found) == 1 and EXPRESSION.fullmatch(text.strip()):
        return found[0][1]
    return text.strip()


_STRING_LITERAL = re.compile(r"""('(?:\\.|[^'\\])*'|"(?:\\.|[^"\\])*")""")
_HYPHENATED_STEP = re.compile(r"(?<![\w.])steps\.([A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)+)")


def _hyphenated_steps(expr: str) -> str:
    """`steps.draft-refunds.output` (a step id with `-`, as GitHub Actions allows) as `steps['draft-refunds']`.

    Read as Jinja it would be a subtraction whose right side names no root, so it can mean nothing else.
    """
    if "-" not in expr or "steps." not in expr:
        return expr
    parts = _STRING_LITERAL.split(expr)  # odd indexes are string literals, left as written
    return "".join(part if i % 2 else _HYPHENATED_STEP.sub(r"steps['\1']", part) for i, part in enumerate(parts))


def jinja_syntax(expr: str) -> str:
    """GitHub Actions' `&&`, `||` and `!` as Jinja's `and`, `or` and `not`, outside string literals,
    and step ids with hyphens as subscripts.

    None of the three operators is valid Jinja, so the translation can never change an expression's meaning.
    """
    expr = _hyphenated_steps(expr)
    if "&" not in expr and "|" not in expr and "!" not in expr:
        return expr
    out: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(expr):
        ch, pair = expr[i], expr[i : i + 2]
        if quote is not None:
            out.append(expr[i : i + 2] if ch == "\\" else ch)
            i += 2 if ch == "\\" else 1
            quote = None if ch == quote else quote
            continue
        if pair in ("&&", "||"):
            out.append(" and " if pair == "&&" else " or ")
            i += 2
            continue
        if ch in "'\"":
            quote = ch
        out.append(" not " if ch == "!" and pair != "!=" else ch)
        i += 1
    return "".join(out)


@lru_cache(maxsize=1)
def _environment() -> SandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def references(expr: str, *, offset: int = 0) -> list[Ref]:
    """The data an expression reads; ExpressionError if it does not parse."""
    return list(analyze(expr, offset=offset).refs)


@lru_cache(maxsize=1024)
def analyze(expr: str, *, offset: int = 0) -> Analysis:
    """Parse an expression and check what parsing does not: filter and test names, status calls."""
    from jinja2 import TemplateSyntaxError, nodes

    try:
        tree = _environment().parse("{{ " + jinja_syntax(expr) + " }}")
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"invalid expression `{expr}`: {exc.message}") from None
    calls, problems = _status_calls(tree)
    called = {id(call.node) for call in tree.find_all(nodes.Call) if _status_name(call) is not None}
    refs: list[Ref] = []
    for name in tree.find_all(nodes.Name):
        if id(name) in called:
            continue
        if name.name in STATUS_FUNCTIONS:
            problems.append(Problem(f"`{name.name}` is a status function: call it, `{name.name}()`",
                                    f"write ${{{{ {name.name}() }}}}"))
            continue
        refs.append(Ref(name.name, (), offset))
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        chain = _chain(node)
        if chain is not None:
            refs.append(Ref(chain[0], chain[1:], offset))
    problems += _unknown_names(tree)
    return Analysis(tuple(_longest(refs)), frozenset(calls), tuple(problems))


def _status_name(call: Any) -> str | None:
    from jinja2 import nodes

    node = call.node
    return node.name if isinstance(node, nodes.Name) and node.name in STATUS_FUNCTIONS else None


def _status_calls(tree: Any) -> tuple[list[str], list[Problem]]:
    from jinja2 import nodes

    calls: list[str] = []
    problems: list[Problem] = []
    for call in tree.find_all(nodes.Call):
        name = _status_name(call)
        if name is None:
            continue
        calls.append(name)
        if call.args or call.kwargs or call.dyn_args or call.dyn_kwargs:
            problems.append(Problem(f"{name}() takes no arguments",
                                    f"write ${{{{ {name}() }}}}; combine it with `and`: {name}() and steps.ID.status == 'failed'"))
    return calls, problems


def _unknown_names(tree: Any) -> list[Problem]:
    """Jinja only looks filters and tests up when it compiles: check them here, before a run."""
    from jinja2 import nodes

    env = _environment()
    problems: list[Problem] = []
    for kind, node_type, known in (("filter", nodes.Filter, env.filters), ("test", nodes.Test, env.tests)):
        for node in tree.find_all(node_type):
            if node.name in known:
                continue
            suggestion = did_you_mean(node.name, set(known))
            usage = f"| {node.name}" if kind == "filter" else f"is {node.name}"
            problems.append(Problem(
                f"unknown {kind} '{node.name}' (`{usage}`)" + (f"; {suggestion}" if suggestion else ""),
                _COMMON[kind] + "; every one: https://jinja.palletsprojects.com/en/stable/templates/#list-of-builtin-"
                + ("filters" if kind == "filter" else "tests"),
            ))
    return problems


_COMMON = {
    "filter": "Jinja's filters, e.g. int, float, string, length, join, default, lower, upper, trim, replace, first, last",
    "test": "Jinja's tests, e.g. defined, none, number, string, true, false, in",
}


def _chain(node: Any) -> tuple[str, ...] | None:
    from jinja2 import nodes

    parts: list[str] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            parts.append(str(node.arg.value))
        elif isinstance(node, nodes.Name):
            parts.append(node.name)
            return tuple(reversed(parts))
        else:
            return None
        node = node.node


def _longest(refs: list[Ref]) -> list[Ref]:
    """Keep only maximal chains: `steps.a.outputs.x`, not also `steps.a` and `steps`."""
    keys = {(r.root, *r.path) for r in refs}
    kept: dict[tuple[str, ...], Ref] = {}
    for ref in refs:
        key = (ref.root, *ref.path)
        if not any(other[: len(key)] == key and len(other) > len(key) for other in keys):
            kept.setdefault(key, ref)
    return list(kept.values())


def evaluate(expr: str, scope: Mapping[str, object]) -> object:
    """Evaluate one expression in the sandbox."""
    from jinja2 import TemplateError, Undefined

    try:
        value = _compile(expr)(**scope)
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()
        return value
    except TemplateError as exc:
        raise ExpressionError(f"`{expr}`: {exc.message or exc}") from None
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise ExpressionError(f"`{expr}`: {exc}") from None


@lru_cache(maxsize=1024)
def _compile(expr: str) -> Any:
    return _environment().compile_expression(jinja_syntax(expr), undefined_to_none=False)


def render(text: str, scope: Mapping[str, object]) -> object:
    """Substitute every `${{ }}` in text. A text that is exactly one expression keeps its type."""
    found = EXPRESSION.fullmatch(text.strip())
    if found is not None and len(find(text)) == 1:
        return evaluate(found.group(1).strip(), scope)
    return EXPRESSION.sub(lambda m: to_text(evaluate(m.group(1).strip(), scope)), text)


def render_text(text: str, scope: Mapping[str, object]) -> str:
    return to_text(render(text, scope))


def to_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list):
        import json

        return json.dumps(value, sort_keys=True)
    return str(value)


def truthy(value: object) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "off", "null", "none")
    return bool(value)


def status_calls(expr: str) -> frozenset[str]:
    """The status functions (`failure()`, ...) an `if:` calls; none means an implicit `success() and`."""
    return analyze(expr).status_calls
