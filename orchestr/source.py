"""YAML loading where every node remembers its `file:line:col`.

PyYAML's composer gives us a node tree with marks; we build plain Python values from it and keep a
side table from each value's path (`("steps", 2, "run")`) to its Span. Duplicate keys, tabs, binary
and empty files become Diagnostics instead of surprises.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeAlias

import yaml

from orchestr.errors import Diagnostic, Span, ValidationFailed

PathKey: TypeAlias = tuple[str | int, ...]
Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STRING_TAGS = {"tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:binary"}
MAX_SOURCE_BYTES = 2_000_000
MAX_DEPTH = 100
MAX_VALUES = 200_000


@dataclass(frozen=True)
class Document:
    """A parsed YAML file: its value plus the span of every node, by path."""

    path: Path
    display: str
    data: object
    spans: dict[PathKey, Span] = field(default_factory=dict)
    key_spans: dict[PathKey, Span] = field(default_factory=dict)
    empty: bool = False  # nothing but blank lines and comments (data is None)

    def span(self, at: PathKey = ()) -> Span:
        """The span of the node at `at`, or of its nearest existing ancestor."""
        for end in range(len(at), -1, -1):
            found = self.spans.get(at[:end])
            if found is not None:
                return found
        return Span(self.display, 1, 1)

    def key_span(self, at: PathKey) -> Span:
        """Where the key naming `at` is written (for "unknown key" errors)."""
        return self.key_spans.get(at) or self.span(at)


def _span(display: str, node: yaml.Node) -> Span:
    mark = node.start_mark
    return Span(display, mark.line + 1, mark.column + 1)


class _TooLarge(Exception):
    """The document cannot be built into values: it is recursive, too deep, or too large."""

    def __init__(self, diagnostic: Diagnostic) -> None:
        self.diagnostic = diagnostic


class _Builder:
    def __init__(self, display: str) -> None:
        self.display = display
        self.spans: dict[PathKey, Span] = {}
        self.key_spans: dict[PathKey, Span] = {}
        self.problems: list[Diagnostic] = []
        self._constructor = yaml.SafeLoader("")
        self._open: set[int] = set()

    def build(self, node: yaml.Node, at: PathKey) -> object:
        span = _span(self.display, node)
        self._guard(node, at, span)
        self.spans[at] = span
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node)
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, at)
            assert isinstance(node, yaml.SequenceNode)
            return [self.build(item, (*at, i)) for i, item in enumerate(node.value)]
        finally:
            self._open.discard(id(node))

    def _guard(self, node: yaml.Node, at: PathKey, span: Span) -> None:
        """Aliases can make a small file recursive or huge; refuse before Python's stack does."""
        if id(node) in self._open:
            message = "this value contains an alias (*name) of itself: the data would be infinite"
            raise _TooLarge(Diagnostic(span, message, hint="remove the alias that refers back to this value"))
        if len(at) > MAX_DEPTH:
            raise _TooLarge(Diagnostic(span, f"values nested more than {MAX_DEPTH} levels deep",
                                       hint="flatten the structure"))
        if len(self.spans) >= MAX_VALUES:
            raise _TooLarge(Diagnostic(span, f"more than {MAX_VALUES} values (counting each use of an alias)",
                                       hint="split the file, or repeat fewer aliases (*name) of large values"))

    def _scalar(self, node: yaml.ScalarNode) -> object:
        if node.tag in _STRING_TAGS:
            return str(node.value)
        return self._constructor.construct_object(node, deep=True)

    def _mapping(self, node: yaml.MappingNode, at: PathKey) -> dict[str, object]:
        result: dict[str, object] = {}
        for key_node, value_node in self._pairs(node):
            # Keys are always read as text: YAML 1.1 would turn `on:` into True.
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                self.problems.append(
                    Diagnostic(
                        _span(self.display, key_node),
                        "mapping keys must be plain strings, not lists or mappings",
                        hint="use a plain word as the key",
                    )
                )
                continue
            if key in result:
                first = self.key_spans[(*at, key)]
                self.problems.append(
                    Diagnostic(
                        _span(self.display, key_node),
                        f"duplicate key '{key}' (first defined at line {first.line})",
                        hint="remove one of the two; YAML would silently keep only the last",
                    )
                )
                continue
            self.key_spans[(*at, key)] = _span(self.display, key_node)
            result[key] = self.build(value_node, (*at, key))
        return result

    def _pairs(self, node: yaml.MappingNode) -> Iterator[tuple[yaml.Node, yaml.Node]]:
        """Key/value pairs, with YAML merge keys (`<<: *base`) expanded after explicit keys."""
        merged: list[tuple[yaml.Node, yaml.Node]] = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for source in sources:
                    if isinstance(source, yaml.MappingNode):
                        merged.extend(source.value)
                continue
            yield key_node, value_node
        explicit = {k.value for k, _ in node.value if isinstance(k, yaml.ScalarNode)}
        seen: set[object] = set()
        for key_node, value_node in merged:
            if key_node.value not in explicit and key_node.value not in seen:
                seen.add(key_node.value)
                yield key_node, value_node


def _at_tab(text: str, line: int, col: int) -> bool:
    lines = text.splitlines()
    return 0 < line <= len(lines) and "\t" in lines[line - 1][: max(col, 1)]


_SYNTAX_HINTS = (
    ("mapping values are not allowed", 'quote a value that contains ": ", e.g. run: "echo a: b"'),
    ("cannot start any token", "quote a value that starts with @, ` or %"),
    ("could not find expected ':'", "write `key: value`; check the line where the key starts"),
    ("expected '-' indicator", "line up every key of a list item with the first key after `- `"),
    ("expected ',' or ']'", "close the [ list ] and separate its items with commas"),
    ("expected ',' or '}'", "close the { mapping } and separate its entries with commas"),
    ("second YAML document", "remove the `---` and what follows it, or move that part to its own file"),
    ("constructor for the tag", "orchestr reads plain YAML: remove the !tag, or quote the value"),
    ("quoted scalar", "close the quote"),
    ("undefined alias", "define the anchor (&name) before an alias (*name) uses it"),
)


def _yaml_error(display: str, exc: yaml.YAMLError, text: str = "") -> Diagnostic:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = str(getattr(exc, "problem", None) or exc).strip()
    if _at_tab(text, line, col):
        return Diagnostic(
            Span(display, line, col),
            "tab character where YAML expects spaces",
            hint="indent with spaces only; replace the tab with spaces",
        )
    context = getattr(exc, "context", None)
    started = getattr(exc, "context_mark", None)
    if context and context.startswith("while ") and started is not None:
        context += f" that starts at line {started.line + 1}, column {started.column + 1}"
    message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    if "found another document" in problem:
        message = "a second YAML document starts here: a file holds one document"
    hint = next((h for key, h in _SYNTAX_HINTS if key in message), "fix the YAML syntax at this position")
    return Diagnostic(Span(display, line, col), message, hint=hint)


def _read_text(path: Path, display: str) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ValidationFailed(
            [Diagnostic(Span(display), "file not found", hint="check the path")]
        ) from None
    except IsADirectoryError:
        raise ValidationFailed(
            [Diagnostic(Span(display), "is a directory, not a YAML file")]
        ) from None
    except OSError as exc:
        raise ValidationFailed([Diagnostic(Span(display), f"cannot read: {exc.strerror}")]) from None
    if len(raw) > MAX_SOURCE_BYTES:
        raise ValidationFailed(
            [Diagnostic(Span(display), f"file is larger than {MAX_SOURCE_BYTES} bytes")]
        )
    if b"\x00" in raw:
        raise ValidationFailed(
            [Diagnostic(Span(display, 1, 1), "binary file (contains NUL bytes), expected YAML text",
                        hint="only YAML text files belong here; move this file elsewhere")]
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ValidationFailed(
            [Diagnostic(Span(display, line, col), "not valid UTF-8 text", hint="save the file as UTF-8")]
        ) from None


def parse_yaml(text: str, *, path: Path, display: str, lenient: bool = False) -> Document:
    """Parse one YAML document into a Document, or raise ValidationFailed.

    `lenient` keeps the first of duplicate keys (and skips non-string keys) instead of raising, so
    that `validate` can go on to report the file's other errors in the same pass.
    """
    try:
        node = yaml.compose(text, Loader=Loader)
    except yaml.YAMLError as exc:
        raise ValidationFailed([_yaml_error(display, exc, text)]) from None
    if node is None:
        return Document(path, display, None, empty=True)
    builder = _Builder(display)
    try:
        data = builder.build(node, ())
    except yaml.YAMLError as exc:
        raise ValidationFailed([_yaml_error(display, exc, text)]) from None
    except _TooLarge as exc:
        raise ValidationFailed([exc.diagnostic]) from None
    if builder.problems and not lenient:
        raise ValidationFailed(builder.problems)
    return Document(path, display, data, builder.spans, builder.key_spans)


def load_yaml(path: Path, *, display: str | None = None, lenient: bool = False) -> Document:
    """Read and parse a YAML file; `display` is how the path is shown in messages."""
    shown = display if display is not None else str(path)
    return parse_yaml(_read_text(path, shown), path=path, display=shown, lenient=lenient)
