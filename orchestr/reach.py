"""An MCP server's reach: what it can touch, and whether a step's permissions cover all of it.

A step may use a server's tools only when its effective permissions cover the server's whole reach:
the server acts on its own, so each of its tools can do anything the server can. What counts is
the reach as the sandbox enforces it (orchestr.tools.sandbox), which binds writable folders, not
single files: `write: [out/report.json]` lets the server write all of `out/`, so a step must allow
`out/**`. A server that declares no reach is taken to reach everything; only a step allowed
everything may use it: `read`/`write` not narrowed by any level (or `read: ["**"]`), `hosts: ["*"]`
and `commands: ["*"]` in its chain.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass

from orchestr.models import McpServerSpec, Reach
from orchestr.permissions import EffectivePermissions, glob_match

REACH_KEYS = ("read", "write", "hosts", "commands")
EVERYTHING = {"read": "**", "write": "**", "hosts": "*", "commands": "*"}


@dataclass(frozen=True)
class ServerReach:
    """A server's reach as enforced; `bounded` False: it reaches everything."""

    name: str
    bounded: bool
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    hosts: tuple[str, ...] = ()
    commands: tuple[str, ...] = ()

    def patterns(self, key: str) -> tuple[str, ...]:
        value: tuple[str, ...] = getattr(self, key)
        return value

    def describe(self) -> dict[str, list[str]] | str:
        if not self.bounded:
            return "everything (no reach declared)"
        return {key: list(self.patterns(key)) for key in REACH_KEYS if self.patterns(key)}

    def text(self) -> str:
        shown = self.describe()
        if isinstance(shown, str):
            return shown
        return "; ".join(f"{key}: {', '.join(values)}" for key, values in shown.items()) or "nothing"


@dataclass(frozen=True)
class ServerRow:
    """A server a context node's tools allow: its reach, and what of it the node's permissions miss."""

    name: str
    reach: ServerReach
    missing: list[str]


def write_dir(pattern: str) -> str:
    """The folder a write glob's fixed prefix names ('' for the project root): what the sandbox binds.

    `out/**` -> `out`; `out/*.json` -> `out`; `out/report.json` -> `out` (a file cannot be bound
    before it exists); `**` -> ''.
    """
    parts = [p for p in re.split(r"/+", pattern) if p not in ("", ".")]
    fixed: list[str] = []
    for part in parts:
        if any(c in part for c in "*?"):
            return "/".join(fixed)
        fixed.append(part)
    return "/".join(fixed[:-1])


def dir_glob(folder: str) -> str:
    return f"{folder}/**" if folder else "**"


def server_reach(name: str, spec: McpServerSpec) -> ServerReach:
    reach: Reach | None = spec.reach
    if reach is None:
        return ServerReach(name, bounded=False)
    hosts = list(reach.hosts)
    host = url_host(spec.url) if spec.url else None
    if host and host not in hosts:
        hosts.append(host)
    writes = tuple(dict.fromkeys(dir_glob(write_dir(p)) for p in reach.write))
    return ServerReach(name, bounded=True, read=reach.read, write=writes, hosts=tuple(hosts),
                       commands=reach.commands)


def url_host(url: str) -> str:
    return (urllib.parse.urlsplit(url).hostname or "").lower()


def reach_gaps(permissions: EffectivePermissions, reach: ServerReach) -> list[str]:
    """What of the server's reach the permissions do not allow, one phrase each; [] when covered."""
    if not reach.bounded:
        return [gap for key in REACH_KEYS if (gap := _everything_gap(permissions, key))]
    gaps = []
    for key in REACH_KEYS:
        for pattern in reach.patterns(key):
            decision = permissions.covers(key, pattern)
            if not decision.allowed:
                gaps.append(decision.reason.replace(" denied", " not allowed", 1))
    return gaps


def _everything_gap(permissions: EffectivePermissions, key: str) -> str | None:
    """A server that reaches everything needs every level that sets `key` to allow everything."""
    wanted = EVERYTHING[key]
    setting = [level for level in permissions.levels if getattr(level, key) is not None]
    if key in ("hosts", "commands"):
        contexts = [level for level in setting if level.is_context]
        if not contexts and (not setting or any(level.is_context for level in permissions.levels)):
            return f"{key} '{wanted}' not allowed: no context in the chain allows {key}: ['{wanted}']"
    for level in setting:
        if wanted not in getattr(level, key):
            allowed = ", ".join(getattr(level, key)) or "nothing"
            return f"{key} '{wanted}' not allowed by {level.source} (allows: {allowed})"
    return None


def servers_allowed(permissions: EffectivePermissions, servers: Iterable[str]) -> list[str]:
    """The servers some of whose tools every level's `tools:` may allow (`fs.*`, `fs.read`, `**`...)."""
    levels = [level.tools for level in permissions.levels if level.tools is not None]
    return [name for name in servers if levels and all(
        any(p.startswith(f"{name}.") or glob_match(p, f"{name}.tool") for p in tools) for tools in levels)]


def coverage_message(reach: ServerReach, gaps: list[str]) -> str:
    return (f"MCP server '{reach.name}' reaches {reach.text()}, beyond this step's permissions: "
            + "; ".join(gaps))
