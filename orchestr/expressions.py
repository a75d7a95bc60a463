"""`${{ ... }}` expressions: parsed and checked at compile time, evaluated in a sandbox at run time.

The grammar is Jinja's expression language (`steps.fetch.outputs.count | int > 0`,
`inputs.mode == "full" and not vars.dry_run`), evaluated by jinja2's SandboxedEnvironment with
StrictUndefined: no attribute access to Python internals, no silent empty strings.
A value never becomes shell source: callers pass rendered values to shells as env vars only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

EXPRESSION = re.compile(r"\$\{\{(.*?)\}\}", re.DOTALL)
ROOTS = ("inputs", "vars", "env", "steps")


class ExpressionError(Exception):
    """An expression that does not parse or cannot be evaluated."""


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


@lru_cache(maxsize=1)
def _environment() -> SandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


def references(expr: str, *, offset: int = 0) -> list[Ref]:
    """The data an expression reads; ExpressionError if it does not parse."""
    from jinja2 import TemplateSyntaxError, nodes

    try:
        tree = _environment().parse("{{ " + expr + " }}")
    except TemplateSyntaxError as exc:
        raise ExpressionError(f"invalid expression `{expr}`: {exc.message}") from None
    refs: list[Ref] = []
    for name in tree.find_all(nodes.Name):
        refs.append(Ref(name.name, (), offset))
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        chain = _chain(node)
        if chain is not None:
            refs.append(Ref(chain[0], chain[1:], offset))
    return _longest(refs)


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
    return _environment().compile_expression(expr, undefined_to_none=False)


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
