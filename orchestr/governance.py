"""The governance paths: what defines an agent's permissions, so no tool may ever write it.

`orchestr.yaml`, `orchestr.lock`, `contexts/`, `workflows/` and the state dir hold the ceiling, the
steps and the run records. An agent that could write them could widen its own permissions for
every later run, so they are out of reach whatever a permission says: a `write:` glob that could
match them is a validation error, and every writing tool refuses them at run time.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

from orchestr.permissions import glob_match

FIXED = ("contexts", "workflows", "orchestr.yaml", "orchestr.lock")
DEFAULT_STATE_DIR = ".orchestr"


@dataclass(frozen=True)
class Governance:
    """The project-relative governance paths (a state dir outside the project is not listed)."""

    paths: tuple[str, ...]

    @classmethod
    def for_state_dir(cls, state_dir: str = DEFAULT_STATE_DIR) -> Governance:
        state = _relative(state_dir)
        return cls(FIXED + ((state,) if state and state not in FIXED else ()))

    def protecting(self, relative: str) -> str | None:
        """The governance path that a project-relative path is, or lies under; None if none."""
        text = _relative(relative)
        for path in self.paths:
            if text == path or text.startswith(path + "/"):
                return path
        return None

    def covered_by(self, pattern: str) -> str | None:
        """The first governance path that a write glob could match (itself or anything under it)."""
        for path in self.paths:
            if glob_match(pattern, path) or _can_match_under(pattern, path + "/"):
                return path
        return None

    def hint(self, pattern: str, path: str) -> str:
        shown = f"{path}/" if path not in ("orchestr.yaml", "orchestr.lock") else path
        return (f"write: '{pattern}' covers {shown}, which no agent may write "
                f"(governance paths: {', '.join(self.paths)}); narrow it to the folders agents produce, "
                "e.g. out/**")


def _relative(path: str) -> str:
    """`./.orchestr/` -> `.orchestr`; an absolute or escaping path is outside the project: ''."""
    if not path or path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        return ""
    parts = [p for p in PurePosixPath(path.replace("\\", "/")).parts if p not in (".", "")]
    return "" if ".." in parts else "/".join(parts)


def _tokens(pattern: str) -> list[str]:
    """A glob as tokens: '**' (anything), '*' and '?' (within one segment), or one literal character."""
    tokens: list[str] = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            tokens.append("**")
            i += 2
        else:
            tokens.append(pattern[i])
            i += 1
    return tokens


def _can_match_under(pattern: str, prefix: str) -> bool:
    """Could the glob match some path starting with `prefix`? (Simulates it on the prefix and asks
    whether any state survives: every remaining glob suffix matches some string.)"""
    tokens = _tokens(pattern)
    states = _closure({0}, tokens)
    for char in prefix:
        following: set[int] = set()
        for state in states:
            if state == len(tokens):
                continue
            token = tokens[state]
            if token == "**" or (token == "*" and char != "/"):
                following.add(state)
            elif (token == "?" and char != "/") or token == char:
                following.add(state + 1)
        states = _closure(following, tokens)
        if not states:
            return False
    return True


def _closure(states: set[int], tokens: Sequence[str]) -> set[int]:
    """States reachable without consuming a character: a star may match nothing."""
    result = set(states)
    stack = list(states)
    while stack:
        state = stack.pop()
        if state < len(tokens) and tokens[state] in ("*", "**") and state + 1 not in result:
            result.add(state + 1)
            stack.append(state + 1)
    return result


def check_write_globs(patterns: Sequence[str], governance: Governance) -> list[tuple[int, str]]:
    """(index, hint) for each write glob that covers a governance path."""
    found = []
    for i, pattern in enumerate(patterns):
        path = governance.covered_by(pattern)
        if path is not None:
            found.append((i, governance.hint(pattern, path)))
    return found
