"""Two snapshots -> every step whose effective prompt, permissions, tools, model, servers or checks changed.

Steps are compared by what they effectively get (orchestr.review.effective), never by their YAML:
a change that only moves whitespace, comments or keys lists nothing, and a change to one context
node lists exactly the steps whose chain holds it.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from orchestr.context import ContextTree, ResolvedContext, render_context
from orchestr.review.effective import (
    EffectiveStep,
    canonical,
    effective_steps,
    sha256,
    widened_keys,
)
from orchestr.review.snapshot import Snapshot

Change = Literal["added", "removed", "changed"]
ASPECTS = ("context", "prompt", "model", "tools", "permissions", "servers", "verify", "command")


@dataclass(frozen=True)
class StepChange:
    workflow: str
    step: str
    change: Change
    aspects: tuple[str, ...]  # what changed; every aspect the step has when added or removed
    before: EffectiveStep | None
    after: EffectiveStep | None
    via: tuple[str, ...]  # context nodes in its chain that changed
    widened: tuple[str, ...]  # permission keys under which it may now do more
    prompt_diff: str
    permissions_diff: str

    @property
    def key(self) -> str:
        return f"{self.workflow}/{self.step}"

    @property
    def current(self) -> EffectiveStep:
        found = self.after or self.before
        assert found is not None
        return found


@dataclass(frozen=True)
class Impact:
    base: str
    head: str
    workflows_added: tuple[str, ...]
    workflows_removed: tuple[str, ...]
    contexts_changed: tuple[str, ...]
    steps: tuple[StepChange, ...]
    notes: tuple[str, ...]

    @property
    def widened(self) -> tuple[StepChange, ...]:
        return tuple(s for s in self.steps if s.widened)

    @property
    def empty(self) -> bool:
        return not (self.steps or self.workflows_added or self.workflows_removed)


def by_key(snapshot: Snapshot) -> dict[str, EffectiveStep]:
    return {s.key: s for plan in snapshot.plans.values() for s in effective_steps(plan, snapshot.config)}


def compare(base: Snapshot, head: Snapshot) -> Impact:
    before, after = by_key(base), by_key(head)
    changed_nodes = _changed_nodes(base.tree, head.tree)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        change = _step_change(before.get(key), after.get(key), changed_nodes)
        if change is not None:
            changes.append(change)
    notes = tuple(f"{base.label}: {d.span}: {d.message} (its steps are compared as added)" for d in base.problems)
    return Impact(
        base=base.label, head=head.label,
        workflows_added=tuple(sorted(head.plans.keys() - base.plans.keys())),
        workflows_removed=tuple(sorted(base.plans.keys() - head.plans.keys())),
        contexts_changed=tuple(sorted(changed_nodes)), steps=tuple(changes), notes=notes,
    )


def _step_change(old: EffectiveStep | None, new: EffectiveStep | None, changed_nodes: set[str]) -> StepChange | None:
    current = new or old
    assert current is not None
    if old is not None and new is not None:
        a, b = old.aspects(), new.aspects()
        aspects = tuple(name for name in ASPECTS if a[name] != b[name])
        if not aspects:
            return None
        change: Change = "changed"
        widened = widened_keys(old, new) if new.kind == "agent" else ()
    else:
        change = "added" if new is not None else "removed"
        aspects = tuple(name for name, value in current.aspects().items() if value)
        # a new agent step is new authority: whatever it may do, it could not before
        widened = tuple(k for k, v in current.permissions.items() if v) if new is not None else ()
    via = tuple(n for n in current.chain if n in changed_nodes) if change == "changed" else ()
    return StepChange(
        workflow=current.workflow, step=current.step, change=change, aspects=aspects, before=old, after=new,
        via=via, widened=widened,
        prompt_diff=_diff(old.prompt if old else "", new.prompt if new else "", current.key, "prompt"),
        permissions_diff=_diff(permission_lines(old), permission_lines(new), current.key, "permissions"),
    )


def permission_lines(step: EffectiveStep | None) -> str:
    if step is None or step.kind != "agent":
        return ""
    lines = [f"{key}: {', '.join(patterns) or '(nothing)'}" for key, patterns in step.permissions.items()]
    lines.append(f"tools given: {', '.join(step.tools) or '(none)'}")
    lines += [f"mcp server {s.name}: config sha256 {s.config_sha256[:16]}" for s in step.servers]
    return "\n".join(lines) + "\n"


def _diff(old: str, new: str, key: str, what: str) -> str:
    if old == new:
        return ""
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                 fromfile=f"a/{key} ({what})", tofile=f"b/{key} ({what})", n=3)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _changed_nodes(old: ContextTree | None, new: ContextTree | None) -> set[str]:
    a, b = _node_digests(old), _node_digests(new)
    return {node for node in a.keys() | b.keys() if a.get(node) != b.get(node)}


def _node_digests(tree: ContextTree | None) -> Mapping[str, str]:
    """Per node, what it gives the steps below it: its text (as rendered alone) and its permissions."""
    if tree is None:
        return {}
    digests: dict[str, str] = {}
    for node_id, node in tree.nodes.items():
        text = render_context(ResolvedContext((node,)), tree.root)
        digests[node_id] = sha256(canonical([text, node.spec.permissions.model_dump(mode="json")]))
    return digests
