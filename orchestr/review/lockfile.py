"""orchestr.lock: what every agent step is told and allowed, small enough to review in a diff.

One entry per agent step (`workflow/step`): its model, tools, effective permissions, the MCP servers
it can use and a sha256 of its effective prompt and of its checks. Keys are sorted and nothing
depends on time or machine, so the same project always gives the same bytes. (Not orchestr.lock's
namesake orchestr/lock.py, which is the run lock of a workflow.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from orchestr.errors import ConfigurationError
from orchestr.models import ProjectConfig
from orchestr.plan import Plan
from orchestr.project import Project
from orchestr.review.effective import EffectiveStep, canonical, effective_steps, sha256
from orchestr.review.snapshot import Snapshot

LOCK_FILE = "orchestr.lock"
VERSION = 1
HEADER = (
    "# orchestr.lock: written by `orchestr lock`; do not edit. Review it like code: it changes when\n"
    "# what an agent step is told (prompt_sha256) or allowed changes. `orchestr lock --check` fails\n"
    "# when it no longer matches the project.\n"
)
Entry = Mapping[str, object]


def entry(step: EffectiveStep) -> dict[str, object]:
    return {
        "context": step.context,
        "model": step.model,
        "permissions": {key: list(patterns) for key, patterns in step.permissions.items()},
        "prompt_sha256": sha256(step.prompt),
        "servers": {s.name: s.to_json() for s in step.servers},
        "tools": list(step.tools),
        "verify_sha256": sha256(canonical(list(step.verify))),
    }


def plan_entries(plan: Plan, config: ProjectConfig) -> dict[str, dict[str, object]]:
    return {s.key: entry(s) for s in effective_steps(plan, config) if s.kind == "agent"}


def entries(snapshot: Snapshot) -> dict[str, dict[str, object]]:
    found: dict[str, dict[str, object]] = {}
    for plan in snapshot.plans.values():
        found.update(plan_entries(plan, snapshot.config))
    return dict(sorted(found.items()))


def render(found: Mapping[str, Entry]) -> str:
    import yaml

    # the pure-Python dumper on purpose: its bytes do not depend on whether libyaml is installed
    steps = yaml.safe_dump({"steps": dict(found)}, sort_keys=True, default_flow_style=None, width=1000,
                           allow_unicode=True)
    return f"{HEADER}version: {VERSION}\n{steps}"


class LockUnreadable(Exception):
    """orchestr.lock is not what `orchestr lock` writes."""


def read(path: Path) -> dict[str, Entry] | None:
    """The lock's entries; None when there is no lock; LockUnreadable when it is not a lock."""
    import yaml

    if not path.is_file():
        return None
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise LockUnreadable(f"{LOCK_FILE} is not valid YAML ({exc.__class__.__name__})") from None
    steps = data.get("steps") if isinstance(data, dict) else None
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(steps, dict) \
            or not all(isinstance(v, dict) for v in steps.values()):
        raise LockUnreadable(f"{LOCK_FILE} is not a version-{VERSION} lock written by `orchestr lock`")
    return {str(k): v for k, v in steps.items()}


def stale(locked: Mapping[str, Entry], current: Mapping[str, Entry]) -> list[str]:
    """One line per step whose entry differs: `workflow/step: what`."""
    lines = []
    for key in sorted(locked.keys() | current.keys()):
        old, new = locked.get(key), current.get(key)
        if old is None:
            lines.append(f"{key}: not in {LOCK_FILE} (a new agent step)")
        elif new is None:
            lines.append(f"{key}: in {LOCK_FILE} but no longer in the project")
        elif old != new:
            fields = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))
            lines.append(f"{key}: {', '.join(f.removesuffix('_sha256') for f in fields)} changed")
    return lines


@dataclass(frozen=True)
class RunCheck:
    """What `run` found: nothing to say, stale steps to warn about, or a reason to refuse."""

    stale: tuple[str, ...]
    missing: bool = False


def check_for_run(project: Project, plan: Plan) -> RunCheck:
    path = project.root / LOCK_FILE
    try:
        locked = read(path)
    except LockUnreadable as exc:
        return RunCheck((str(exc),))
    if locked is None:
        return RunCheck((), missing=True)
    prefix = f"{plan.workflow}/"
    mine = {k: v for k, v in locked.items() if k.startswith(prefix)}
    return RunCheck(tuple(stale(mine, plan_entries(plan, project.config))))


def guard_run(project: Project, plan: Plan, *, warn: Callable[[str], None]) -> None:
    """Before a run: silent without a lock; a one-line warning when stale; with `lock: required`
    in orchestr.yaml, a missing or stale lock is refused (exit 2) before anything runs."""
    required = project.config.lock == "required"
    if not required and not (project.root / LOCK_FILE).is_file():
        return
    found = check_for_run(project, plan)
    if required and found.missing:
        raise ConfigurationError(f"orchestr.yaml says `lock: required` but there is no {LOCK_FILE}: "
                                 "run `orchestr lock`, review it and commit it")
    if not found.stale:
        return
    steps = "; ".join(found.stale)
    if required:
        raise ConfigurationError(f"{LOCK_FILE} is stale ({steps}) and orchestr.yaml says `lock: required`: "
                                 "review the change (`orchestr impact`), then run `orchestr lock` and commit it")
    warn(f"warning: {LOCK_FILE} is stale ({steps}): review the change, then run `orchestr lock`")
