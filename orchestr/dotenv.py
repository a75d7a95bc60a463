"""`.env` at the project root: KEY=value lines added to the environment orchestr runs with.

The real environment always wins (a key already set is never overridden), and every key a `.env`
sets is treated as a secret: its value is redacted from traces, events and run records like the
`secrets:` a workflow declares. Syntax: `KEY=value`, optional `export `, `#` comments, values
in single quotes (literal) or double quotes (`\\n`, `\\"`, `\\\\` escapes).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from orchestr.errors import Diagnostic, Span, ValidationFailed

DOTENV_FILE = ".env"
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}


def _unquote(raw: str) -> str | None:
    """The value of `raw`, or None if a quote is not closed."""
    if raw[:1] == "'":
        end = raw.find("'", 1)
        return None if end < 0 else raw[1:end]
    if raw[:1] == '"':
        match = re.match(r'"((?:[^"\\]|\\.)*)"', raw)
        if match is None:
            return None
        return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), match.group(1))
    return re.sub(r"\s+#.*$", "", raw)


def parse_dotenv(text: str, *, display: str) -> dict[str, str]:
    values: dict[str, str] = {}
    problems: list[Diagnostic] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        value = _unquote(match.group(2)) if match else None
        if match is None or value is None:
            what = "a quote is not closed" if match else "expected KEY=value"
            problems.append(Diagnostic(Span(display, number, 1), f"{what} in {DOTENV_FILE}",
                                       hint="write one KEY=value per line; quote values with spaces or #"))
            continue
        values[match.group(1)] = value
    if problems:
        raise ValidationFailed(problems)
    return values


def read_dotenv(root: Path) -> dict[str, str]:
    """The project's `.env` (empty when there is none)."""
    path = root / DOTENV_FILE
    if not path.is_file():
        return {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValidationFailed([Diagnostic(Span(DOTENV_FILE), f"cannot read {DOTENV_FILE}: {exc}")]) from None
    return parse_dotenv(text, display=DOTENV_FILE)


def with_dotenv(root: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """`environ` plus the keys of the project's `.env` it does not already set."""
    return {**read_dotenv(root), **environ}
