"""`--allow KEY:VALUE`: a per-run grant that widens the agent and step levels, never the context.

Because an action must be allowed by every level that sets its key, a grant can only reach as far
as the context chain's ceiling; a grant beyond it is refused up front (exit 2), not silently ignored.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from orchestr.errors import UsageError
from orchestr.governance import Governance
from orchestr.models import PERMISSION_KEYS
from orchestr.permissions import EffectivePermissions, PermissionLevel, subsumes


def parse_grant(text: str) -> tuple[str, str]:
    key, sep, value = text.partition(":")
    if not sep or key not in PERMISSION_KEYS or not value:
        raise UsageError(f"--allow {text!r}: write KEY:VALUE with KEY one of {', '.join(PERMISSION_KEYS)} "
                         "(e.g. --allow write:out/** or --allow tools:run_command)")
    return key, value


def apply_grants(permissions: EffectivePermissions, grants: Sequence[str], *,
                 governance: Governance | None = None) -> EffectivePermissions:
    levels = list(permissions.levels)
    governance = governance or Governance.for_state_dir()
    for text in grants:
        key, value = parse_grant(text)
        covered = governance.covered_by(value) if key == "write" else None
        if covered is not None:
            raise UsageError(f"--allow {text}: {governance.hint(value, covered)}")
        contexts = [level for level in levels if level.is_context]
        if key in ("commands", "hosts") and not any(getattr(level, key) is not None for level in contexts):
            raise UsageError(f"--allow {text}: no context in the chain allows any {key}; "
                             f"add it to the context's permissions.{key} first")
        for level in levels:
            allowed = getattr(level, key)
            if level.is_context and allowed is not None and not subsumes(allowed, value, key):
                raise UsageError(f"--allow {text}: beyond the ceiling of {level.source} "
                                 f"({key}: {', '.join(allowed) or 'nothing'})")
        levels = [_widen(level, key, value) for level in levels]
        if not any(getattr(level, key) is not None for level in levels):
            levels.append(PermissionLevel(source="--allow", **{key: (value,)}))  # type: ignore[arg-type]
    return EffectivePermissions(tuple(levels))


def _widen(level: PermissionLevel, key: str, value: str) -> PermissionLevel:
    current = getattr(level, key)
    if level.is_context or current is None or value in current:
        return level
    widened: dict[str, tuple[str, ...]] = {key: (*current, value)}
    return dataclasses.replace(level, **widened)  # type: ignore[arg-type]


def granted_tools(grants: Sequence[str]) -> tuple[str, ...]:
    return tuple(value for key, value in map(parse_grant, grants) if key == "tools")
