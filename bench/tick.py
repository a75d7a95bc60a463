"""Benchmark (make bench): draining a day of owed slots, beside back-to-back runs of the same workflow.

A tick that owes 96 slots (a day of `*/15` after downtime, `catchup: all`, `overlap: queue`) is
timed from its start until its drainer has served every slot; beside it, 96 back-to-back
`orchestr run`s of the same one-step workflow. Goal: the drain within 1.2x of the runs.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from table import print_table

ROOT = Path(__file__).resolve().parents[1]
ORCHESTR = [sys.executable, "-m", "orchestr"]
SLOTS = 96
GOAL = 1.2


def project(root: Path) -> Path:
    (root / "workflows").mkdir(parents=True)
    (root / "workflows" / "job.yaml").write_text(
        "name: job\n"
        "schedule: { cron: '*/15 * * * *', timezone: UTC, catchup: all, catchup_window: 25h, overlap: queue }\n"
        "steps:\n  - id: work\n    run: 'echo \"$ORCHESTR_SLOT\" >> ran.txt'\n")
    return root


def orchestr(root: Path, *args: str) -> None:
    done = subprocess.run([*ORCHESTR, *args], cwd=root, capture_output=True, env={**os.environ, "NO_COLOR": "1"})
    if done.returncode != 0:
        raise SystemExit(f"orchestr {' '.join(args)} failed ({done.returncode}): {done.stderr.decode()[-800:]}")


def settled(root: Path) -> int:
    with sqlite3.connect(root / ".orchestr" / "state.db") as db:
        return int(db.execute("SELECT count(*) FROM slots WHERE outcome = 'ran'").fetchone()[0])


def drain_seconds(root: Path) -> float:
    orchestr(root, "tick", "--now", "2026-11-24T00:00:30Z")  # the ledger starts; its one slot runs
    deadline = time.monotonic() + 60
    while settled(root) < 1:
        if time.monotonic() > deadline:
            raise SystemExit("the first slot did not run")
        time.sleep(0.05)
    began = time.perf_counter()
    orchestr(root, "tick", "--now", "2026-11-25T00:00:30Z", "--wait")  # a day later: 96 owed slots
    seconds = time.perf_counter() - began
    ran = (root / "ran.txt").read_text().splitlines()
    if len(ran) != SLOTS + 1 or ran != sorted(ran):
        raise SystemExit(f"expected {SLOTS + 1} slots in order, got {len(ran)}")
    return seconds


def runs_seconds(root: Path) -> float:
    began = time.perf_counter()
    for _ in range(SLOTS):
        orchestr(root, "run", "job", "-q")
    return time.perf_counter() - began


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        drain = drain_seconds(project(Path(tmp) / "drain"))
        runs = runs_seconds(project(Path(tmp) / "runs"))
    verdict = "ok" if drain <= GOAL * runs else "MISSED"
    print_table("orchestr tick benchmarks", [
        (f"{SLOTS} back-to-back `orchestr run` (one shell step)", f"{runs:.2f} s", "(the reference)"),
        (f"tick draining {SLOTS} owed slots (catchup: all, overlap: queue)", f"{drain:.2f} s",
         f"{drain / runs:.2f}x the runs; goal <= {GOAL}x: {verdict}"),
    ])


if __name__ == "__main__":
    main()
