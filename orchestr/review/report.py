"""An Impact as text (a terminal), markdown (a pull-request comment) or JSON (CI)."""

from __future__ import annotations

import re

from orchestr.review.impact import Impact, StepChange


def _counted(n: int, noun: str, verb: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''} {verb}"


def _summary(impact: Impact) -> str:
    parts = [_counted(sum(1 for s in impact.steps if s.change == verb), "step", verb)
             for verb in ("changed", "added", "removed")]
    parts += [_counted(len(impact.workflows_added), "workflow", "added"),
              _counted(len(impact.workflows_removed), "workflow", "removed")]
    shown = [part for part in parts if not part.startswith("0 ")]
    if impact.widened:
        shown.append(f"permissions widen in {_counted(len(impact.widened), 'step', '').strip()}")
    return ", ".join(shown) or "nothing effective changed"


def _what(change: StepChange) -> str:
    text = ", ".join(change.aspects)
    if change.via:
        text += f" (via context {', '.join(change.via)})"
    if change.widened:
        text += f"; WIDENS {', '.join(change.widened)}"
    return text


def _facts(change: StepChange) -> list[str]:
    step = change.current
    if step.kind in ("shell", "approval"):
        return [f"{step.kind} step"]
    facts = [f"model {step.model}", f"tools {', '.join(step.tools) or '(none)'}"]
    if step.context:
        facts.append(f"context {step.context}")
    if change.before and change.after and change.before.model != change.after.model:
        facts[0] = f"model {change.before.model} -> {change.after.model}"
    return facts


def _verify_diff(change: StepChange) -> str:
    old = set(change.before.verify if change.before else ())
    new = set(change.after.verify if change.after else ())
    return "".join([*(f"- {c}\n" for c in sorted(old - new)), *(f"+ {c}\n" for c in sorted(new - old))])


def _command_diff(change: StepChange) -> str:
    import difflib

    old = change.before.command if change.before else ""
    new = change.after.command if change.after else ""
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=f"a/{change.key} (command)", tofile=f"b/{change.key} (command)"))


def _diffs(change: StepChange) -> list[tuple[str, str]]:
    """(title, unified diff) for the aspects a reviewer reads line by line."""
    found = []
    if change.change == "changed":
        if change.prompt_diff:
            found.append(("prompt", change.prompt_diff))
        if change.permissions_diff:
            found.append(("permissions", change.permissions_diff))
        if "command" in change.aspects:
            found.append(("command", _command_diff(change)))
    elif change.current.kind == "agent":
        found.append(("permissions", change.permissions_diff))
    if "verify" in change.aspects and change.change == "changed":
        found.append(("verification", _verify_diff(change)))
    return found


# --- text -------------------------------------------------------------------------------------


def render_text(impact: Impact) -> str:
    lines = [f"impact of {impact.head} against {impact.base}: {_summary(impact)}"]
    lines += [f"note: {note}" for note in impact.notes]
    if impact.contexts_changed:
        lines.append(f"context nodes changed: {', '.join(impact.contexts_changed)}")
    lines += [f"workflow added: {name}" for name in impact.workflows_added]
    lines += [f"workflow removed: {name}" for name in impact.workflows_removed]
    for change in impact.steps:
        lines += ["", f"{change.change}: {change.key}  [{_what(change)}]", "  " + "; ".join(_facts(change))]
        for _, diff in _diffs(change):
            lines += ["  " + line for line in diff.rstrip("\n").splitlines()]
    if impact.empty:
        lines.append("no step's effective prompt, permissions, tools, model, servers or checks changed")
    return "\n".join(lines) + "\n"


# --- markdown ---------------------------------------------------------------------------------


def _fence(text: str, lang: str) -> str:
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{text.rstrip(chr(10))}\n{ticks}"


def _code(text: str) -> str:
    return f"`{text}`" if "`" not in text else f"`` {text} ``"


def render_markdown(impact: Impact) -> str:
    out = [f"### orchestr impact: {_code(impact.head)} against {_code(impact.base)}", "", f"**{_summary(impact)}**"]
    out += [f"> note: {note}" for note in impact.notes]
    if impact.contexts_changed:
        out += ["", "Context nodes changed: " + ", ".join(map(_code, impact.contexts_changed))]
    for verb, names in (("added", impact.workflows_added), ("removed", impact.workflows_removed)):
        if names:
            out += ["", f"Workflows {verb}: " + ", ".join(map(_code, names))]
    if impact.empty:
        out += ["", "No step's effective prompt, permissions, tools, model, servers or checks changed."]
        return "\n".join(out) + "\n"
    out += ["", "| step | change | what changed |", "| --- | --- | --- |"]
    out += [f"| {_code(c.key)} | {c.change} | {_what(c)} |" for c in impact.steps]
    for change in impact.steps:
        out += ["", f"#### {_code(change.key)} ({change.change})", "", " · ".join(_facts(change))]
        for title, diff in _diffs(change):
            out += ["", f"<details><summary>{title}</summary>", "", _fence(diff, "diff"), "", "</details>"]
    return "\n".join(out) + "\n"


# --- json -------------------------------------------------------------------------------------


def _step_json(step: object) -> object:
    from orchestr.review.effective import EffectiveStep, sha256

    if not isinstance(step, EffectiveStep):
        return None
    return {**step.aspects(), "kind": step.kind, "prompt_sha256": sha256(step.prompt) if step.prompt else None}


def impact_json(impact: Impact) -> dict[str, object]:
    return {
        "base": impact.base, "head": impact.head,
        "workflows": {"added": list(impact.workflows_added), "removed": list(impact.workflows_removed)},
        "contexts_changed": list(impact.contexts_changed),
        "permissions_widened": bool(impact.widened),
        "notes": list(impact.notes),
        "steps": [{
            "workflow": c.workflow, "step": c.step, "change": c.change, "changed": list(c.aspects),
            "via": list(c.via), "widened": list(c.widened), "prompt_diff": c.prompt_diff,
            "permissions_diff": c.permissions_diff, "before": _step_json(c.before), "after": _step_json(c.after),
        } for c in impact.steps],
    }
