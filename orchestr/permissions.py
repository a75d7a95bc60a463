"""Permissions as levels that only narrow: an action is allowed only if every level that sets its
key allows it.

Levels come from the context chain (root first), the agent, the step and per-run grants. Two
secure defaults on top of the contract's rule: a tool must be listed by some level (an agent has
no tool it was not given), and `commands`/`hosts` reach outside the project, so with no level
setting them nothing is allowed. `read`/`write` unset means anywhere inside the project root
(except the governance paths, which no tool ever writes: orchestr.governance). A `commands` entry
`*` allows any command; `hosts: ["*"]` any host.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

KEYS = ("tools", "read", "write", "commands", "hosts")
DENY_WHEN_UNSET = ("tools", "commands", "hosts")
REACH_OUTSIDE = ("commands", "hosts")


@lru_cache(maxsize=4096)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("(/.*)?")  # `dir/**` also matches `dir` itself
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def glob_match(pattern: str, text: str) -> bool:
    """`**` crosses `/`, `*` and `?` do not; everything else is literal."""
    return _glob_regex(pattern).match(text) is not None


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


@dataclass(frozen=True)
class PermissionLevel:
    source: str
    tools: tuple[str, ...] | None = None
    read: tuple[str, ...] | None = None
    write: tuple[str, ...] | None = None
    commands: tuple[str, ...] | None = None
    hosts: tuple[str, ...] | None = None

    @property
    def is_context(self) -> bool:
        """A level of the context tree: the ceiling that agents, steps and grants cannot pass."""
        return self.source.startswith("context ")


def _argv(command: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(command))
    except ValueError:
        return (command,)


def _allows(key: str, patterns: tuple[str, ...], value: str | Sequence[str]) -> bool:
    if key == "commands":
        argv = tuple(value) if not isinstance(value, str) else _argv(value)
        return any(prefix == ("*",) or (prefix and argv[: len(prefix)] == prefix) for prefix in map(_argv, patterns))
    assert isinstance(value, str)
    if key == "hosts":
        return any(glob_match(p.lower(), value.lower()) for p in patterns)
    return any(glob_match(p, value) for p in patterns)


@dataclass(frozen=True)
class EffectivePermissions:
    levels: tuple[PermissionLevel, ...]

    @property
    def _in_context(self) -> bool:
        return any(level.is_context for level in self.levels)

    def _check(self, key: str, value: str | Sequence[str], shown: str, *, as_pattern: bool = False) -> Decision:
        setting = [level for level in self.levels if getattr(level, key) is not None]
        noun = key[:-1] if key != "commands" else "command"
        if not setting and key in DENY_WHEN_UNSET:
            return Decision(False, f"{noun} {shown} denied: no level allows any {key}")
        if key in REACH_OUTSIDE and self._in_context and not any(level.is_context for level in setting):
            # An agent or step cannot grant itself a reach outside the project its context never gave.
            return Decision(False, f"{noun} {shown} denied: no context in the chain allows any {key}")
        for level in setting:
            patterns = getattr(level, key)
            if not (subsumes(patterns, str(value), key) if as_pattern else _allows(key, patterns, value)):
                allowed = ", ".join(patterns) or "nothing"
                return Decision(False, f"{key} {shown} denied by {level.source} (allows: {allowed})")
        return Decision(True)

    def check_tool(self, name: str) -> Decision:
        return self._check("tools", name, repr(name))

    def check_read(self, rel_path: str) -> Decision:
        return self._check("read", rel_path, repr(rel_path))

    def check_write(self, rel_path: str) -> Decision:
        return self._check("write", rel_path, repr(rel_path))

    def check_command(self, argv: Sequence[str]) -> Decision:
        return self._check("commands", tuple(argv), shlex.join(argv))

    def check_host(self, host: str) -> Decision:
        return self._check("hosts", host.partition(":")[0] if host.count(":") == 1 else host, repr(host))

    def check_host_any(self) -> bool:
        """Could any host at all be allowed? (Every level that sets `hosts` lists one, a context among them.)"""
        setting = [level.hosts for level in self.levels if level.hosts is not None]
        contexts = [level for level in self.levels if level.is_context and level.hosts is not None]
        return bool(setting) and all(setting) and (bool(contexts) or not self._in_context)

    def covers(self, key: str, pattern: str) -> Decision:
        """Is everything `pattern` (a glob, host pattern or command prefix) names allowed at every level?"""
        return self._check(key, pattern, repr(pattern), as_pattern=True)

    def summary(self) -> dict[str, list[str] | None]:
        """Per key, the patterns of the most specific level that sets it (None: unset)."""
        result: dict[str, list[str] | None] = {}
        for key in KEYS:
            setting = [getattr(level, key) for level in self.levels if getattr(level, key) is not None]
            result[key] = list(setting[-1]) if setting else None
        return result

    def describe(self) -> dict[str, list[dict[str, object]]]:
        """Every level's patterns per key, root first."""
        return {
            key: [{"source": level.source, "patterns": list(getattr(level, key))}
                  for level in self.levels if getattr(level, key) is not None]
            for key in KEYS
        }


def subsumes(parent_patterns: Sequence[str], child_pattern: str, key: str) -> bool:
    """Is the child's pattern within what the parent allows (read as a literal)?"""
    if key == "commands":
        return _allows("commands", tuple(parent_patterns), _argv(child_pattern))
    if key == "hosts":
        child_pattern = child_pattern.lower()
        parent_patterns = [p.lower() for p in parent_patterns]
    return any(p == child_pattern or glob_match(p, child_pattern) for p in parent_patterns)


class PathDenied(Exception):
    """A model-supplied path that would leave the project."""


def resolve_in_root(root: Path, user_path: str) -> Path:
    """The real path of a project-relative path, or PathDenied: no absolute, `..` or symlink escape."""
    if not user_path or "\x00" in user_path:
        raise PathDenied("an empty path or a NUL byte")
    if user_path.startswith(("/", "\\")) or Path(user_path).is_absolute():
        raise PathDenied(f"{user_path!r} is absolute: paths are relative to the project root")
    parts = re.split(r"[\\/]+", user_path)
    if ".." in parts:
        raise PathDenied(f"{user_path!r} contains '..': paths must stay inside the project")
    base = root.resolve()
    resolved = (base / user_path).resolve(strict=False)
    if resolved != base and base not in resolved.parents:
        raise PathDenied(f"{user_path!r} leads outside the project (through a symlink)")
    return resolved


def beyond_ceiling(ceiling: Sequence[PermissionLevel], key: str, pattern: str) -> str | None:
    """Why an agent's or step's `pattern` reaches past the context chain's levels, or None."""
    setting = [level for level in ceiling if getattr(level, key) is not None]
    if not setting and key in REACH_OUTSIDE:
        return f"no context in the chain allows any {key}"
    for level in setting:
        allowed: tuple[str, ...] = getattr(level, key)
        if not subsumes(allowed, pattern, key):
            return f"{level.source} does not allow it ({key}: {', '.join(allowed) or 'nothing'})"
    return None
