"""`orchestr runs prune`: forget run history older than a date, keeping what the rest still reads.

Kept whatever its age: a run still in progress (its process lives), each workflow's newest run
(`--resume last`, `runs show last`), and any run a schedule slot still points at for its state
(an owed slot's run, and the run of each workflow's newest settled slot, which `status` reports).
The schedule ledger itself (`slots`, `schedules`) is never pruned: it is what makes each slot run
exactly once.

The SQL goes through the store's connection-level API (`_query`, `_tx`) as it is today; it is
kept apart here so it can move behind the store's own seam.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from orchestr.events import iso
from orchestr.store import Store

RUN_TABLES = ("events", "attempts", "steps")  # rows keyed by run_id; the run row goes last
CHUNK = 500  # ids per statement, well under SQLite's bound-parameter limit


@dataclass(frozen=True)
class PruneResult:
    pruned: tuple[str, ...]
    kept: tuple[str, ...]  # older than the cutoff, kept for one of the reasons above
    folders: int  # work folders removed


def prune_runs(store: Store, *, before: datetime, dry_run: bool = False) -> PruneResult:
    """Delete runs started before `before` (with their steps, attempts and events) in one transaction."""
    old = [str(r["id"]) for r in store._query("SELECT id FROM runs WHERE started_at < ? ORDER BY started_at",
                                               (iso(before),))]
    protected = _protected(store)
    pruned = [run_id for run_id in old if run_id not in protected and not _in_progress(store, run_id)]
    gone = set(pruned)
    kept = [run_id for run_id in old if run_id not in gone]
    folders = 0
    if not dry_run and pruned:
        with store._tx() as db:
            for chunk in _chunks(pruned):
                marks = ", ".join("?" for _ in chunk)
                for table in RUN_TABLES:
                    db.execute(f"DELETE FROM {table} WHERE run_id IN ({marks})", chunk)
                db.execute(f"DELETE FROM runs WHERE id IN ({marks})", chunk)
        folders = remove_work_folders(store.state_dir, pruned, whole=True)
    return PruneResult(tuple(pruned), tuple(kept), folders)


def _protected(store: Store) -> set[str]:
    # SQLite takes a bare column from the row that holds the MAX
    newest = store._query("SELECT id, MAX(started_at) FROM runs GROUP BY workflow")
    owed = store._query("SELECT run_id FROM slots WHERE outcome IS NULL AND run_id IS NOT NULL")
    last_settled = store._query(
        "SELECT run_id FROM slots s WHERE run_id IS NOT NULL AND outcome IS NOT NULL AND slot = ("
        "SELECT MAX(slot) FROM slots t WHERE t.workflow = s.workflow AND t.outcome IS NOT NULL)")
    return {str(r[0]) for r in (*newest, *owed, *last_settled)}


def _in_progress(store: Store, run_id: str) -> bool:
    row = store.run(run_id)
    return row is not None and row.effective_status == "running"


def _chunks(ids: Sequence[str]) -> Iterator[tuple[str, ...]]:
    for start in range(0, len(ids), CHUNK):
        yield tuple(ids[start:start + CHUNK])


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
