"""What an approver is shown, kept exactly: content hashes, copies, and renderings.

At a run's start the `show` files that already exist are copied (the *baseline*), so `approvals
show` can render what the run changed as a diff. At request time each file is hashed and copied:
the decision is tied to that content, and `approve` refuses when the file has changed since.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import shutil
from pathlib import Path

from orchestr.permissions import PathDenied, resolve_in_root
from orchestr.plan import Plan

BASELINE_DIR = "approval-baseline"
SHOWN_DIR = "approvals"
MAX_RENDERED_CHARS = 200_000


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def baseline_path(work_dir: Path, name: str) -> Path:
    return work_dir / BASELINE_DIR / name


def shown_path(work_dir: Path, step_id: str, request: int, name: str) -> Path:
    return work_dir / SHOWN_DIR / step_id / str(request) / name


def snapshot_baseline(plan: Plan, root: Path, work_dir: Path) -> None:
    """Copy each approval step's `show` files as they are before the run writes them."""
    from orchestr.models import ApprovalStep

    for step in plan.steps.values():
        if not isinstance(step.spec, ApprovalStep):
            continue
        for name in step.spec.approval.show:
            try:
                source = resolve_in_root(root, name)
            except PathDenied:
                continue  # the compiler rejects such a path; nothing to keep
            if source.is_file():
                _copy(source, baseline_path(work_dir, name))


def keep_shown(source: Path, work_dir: Path, step_id: str, request: int, name: str) -> None:
    _copy(source, shown_path(work_dir, step_id, request, name))


def _copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def pretty(text: str, name: str) -> str:
    """JSON pretty-printed (keys in their order), anything else as it is."""
    if name.endswith(".json") or text.lstrip().startswith(("{", "[")):
        try:
            return json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n"
        except ValueError:
            return text
    return text


def read_text(path: Path) -> str:
    data = path.read_bytes()[:MAX_RENDERED_CHARS]
    return data.decode("utf-8", errors="replace")


def diff(before: str, after: str, name: str) -> str:
    lines = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                 fromfile=f"{name} (before the run)", tofile=f"{name} (shown for approval)")
    return "".join(lines) or "(no change: the run left this file as it was)\n"
