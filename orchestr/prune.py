"""`orchestr runs prune`: forget run history older than a date, keeping what the rest still reads.

Kept whatever its age: a run still in progress (its process lives), each workflow's newest run
(`--resume last`, `runs show last`), and any run a schedule slot still points at for its state
(an owed slot's run, and the run of each workflow's newest settled slot, which `status` reports).
The schedule ledger itself (`slots`, `schedules`) is never pruned: it is what makes each slot run
exactly once.

What is old and what is still read come from the store (`runs_started_before`,
`runs_still_read`); the store deletes (`delete_runs`), on either backend.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from orchestr.store import Store


@dataclass(frozen=True)
class PruneResult:
    pruned: tuple[str, ...]
    kept: tuple[str, ...]  # older than the cutoff, kept for one of the reasons above
    folders: int  # work folders removed


def prune_runs(store: Store, *, before: datetime, dry_run: bool = False) -> PruneResult:
    """Delete runs started before `before` (with their steps, attempts and events) in one transaction."""
    old = store.runs_started_before(before)
    protected = store.runs_still_read()
    pruned = [run_id for run_id in old if run_id not in protected and not _in_progress(store, run_id)]
    gone = set(pruned)
    kept = [run_id for run_id in old if run_id not in gone]
    folders = 0
    if not dry_run and pruned:
        store.delete_runs(pruned)
        folders = remove_work_folders(store.state_dir, pruned, whole=True)
    return PruneResult(tuple(pruned), tuple(kept), folders)


def _in_progress(store: Store, run_id: str) -> bool:
    row = store.run(run_id)
    return row is not None and row.effective_status == "running"


def run_folder(state_dir: Path, run_id: str) -> Path:
    """A run's own folder: its output log (part of its history) and, while it runs, its work folder."""
    return state_dir / "runs" / run_id


def work_folder(state_dir: Path, run_id: str) -> Path:
    """Where a run's steps keep scratch files (a shell step's $ORCHESTR_OUTPUT) while it runs."""
    return run_folder(state_dir, run_id) / "work"


def remove_work_folders(state_dir: Path, run_ids: Sequence[str], *, whole: bool = False) -> int:
    """Remove the runs' scratch folders (a run that ended), or their whole folders (`whole`: pruned runs)."""
    removed = 0
    for run_id in run_ids:
        folder = run_folder(state_dir, run_id) if whole else work_folder(state_dir, run_id)
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
