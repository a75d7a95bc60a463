"""Work folders go when a run ends; `orchestr runs prune` forgets old history but keeps what is read."""

from __future__ import annotations

import json
from pathlib import Path

from orchestr.store import SqliteStore as Store
from tests.conftest import ProjectDir


def _runs_dir(project: ProjectDir) -> Path:
    return project.root / ".orchestr" / "runs"


def _leftovers(project: ProjectDir) -> list[str]:
    """Work folders left behind (a run's own folder keeps only its output log, output.jsonl)."""
    folder = _runs_dir(project)
    return sorted(str(p.relative_to(folder)) for p in folder.glob("*/*") if p.name != "output.jsonl")


def _run_ids(project: ProjectDir) -> list[str]:
    listed = project.cli("runs", "list", "--format", "json", "-n", "100")
    return [r["id"] for r in json.loads(listed.stdout)]


def test_a_finished_run_leaves_no_work_folder_whatever_its_outcome(project: ProjectDir) -> None:
    # (its output log, runs/RUN/output.jsonl, is history: `orchestr logs` reads it until prune)
    project.write("workflows/w.yaml", """
        inputs:
          code: { type: integer, default: 0 }
        steps:
          - id: out
            env: { CODE: "${{ inputs.code }}" }
            run: |
              echo "made=yes" >> "$ORCHESTR_OUTPUT"
              exit "$CODE"
          - id: after
            needs: [out]
            env: { MADE: "${{ steps.out.outputs.made }}" }
            run: test "$MADE" = yes
    """)
    assert project.cli("run", "w", "-q").exit_code == 0
    assert project.cli("run", "w", "-q", "-i", "code=3").exit_code == 1
    assert _leftovers(project) == []
    # the outputs a resume needs are in the record, not in the folder
    resumed = project.cli("run", "w", "--resume", "last", "-q")
    assert resumed.exit_code == 1  # same inputs (code=3): `out` fails again
    assert _leftovers(project) == []
    shown = json.loads(project.cli("runs", "show", "last", "--format", "json").stdout)
    assert any(s["outputs"] == {"made": "yes"} for s in shown["steps"]), shown["steps"]


def _scheduled(project: ProjectDir) -> None:
    project.write("workflows/job.yaml", """
        name: job
        schedule: { cron: "*/15 * * * *", timezone: Europe/Berlin }
        steps:
          - id: work
            run: "true"
    """)
    project.write("workflows/other.yaml", "steps:\n  - id: a\n    run: 'true'\n")


def test_prune_forgets_old_runs_with_their_records_and_keeps_what_is_still_read(project: ProjectDir) -> None:
    _scheduled(project)
    assert project.run("tick", "--now", "2026-11-24T08:15:02Z", "--wait").exit_code == 0
    slot_run = _run_ids(project)[0]
    for _ in range(2):
        assert project.cli("run", "job", "-q").exit_code == 0
        assert project.cli("run", "other", "-q").exit_code == 0
    ids = _run_ids(project)
    newest_job, newest_other = ids[1], ids[0]
    old_job, old_other = ids[3], ids[2]
    crashed_leftover = _runs_dir(project) / old_other / "work"
    crashed_leftover.mkdir(parents=True, exist_ok=True)  # as a killed run would leave it
    (crashed_leftover / "a.1.outputs").write_text("x=1\n")

    dry = project.cli("runs", "prune", "--older-than", "0s", "--dry-run", "--format", "json")
    assert dry.exit_code == 0, dry.output
    planned = json.loads(dry.stdout)
    assert sorted(planned["pruned"]) == sorted([old_job, old_other])
    assert sorted(planned["kept"]) == sorted([slot_run, newest_job, newest_other])
    assert len(_run_ids(project)) == 5 and crashed_leftover.is_dir()

    done = project.cli("runs", "prune", "--older-than", "0s")
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith("pruned 2 run(s) started before ")
    assert sorted(_run_ids(project)) == sorted([slot_run, newest_job, newest_other])
    assert not crashed_leftover.exists() and not crashed_leftover.parent.exists()
    store = Store(project.root / ".orchestr")
    try:
        for gone in (old_job, old_other):
            assert store.steps(gone) == [] and store.attempts(gone) == [] and store.events(gone) == []
        assert store.events(newest_job) and store.steps(slot_run)
        assert [s["outcome"] for s in store.slots("job")] == ["ran"]  # the ledger is never pruned
    finally:
        store.close()
    status = project.cli("status", "--now", "2026-11-24T08:20:00Z", "--format", "json")
    assert json.loads(status.stdout)["ok"] is True, status.output


def test_prune_keeps_recent_runs_and_rejects_a_bad_age(project: ProjectDir) -> None:
    _scheduled(project)
    for _ in range(2):
        assert project.cli("run", "other", "-q").exit_code == 0
    kept = project.cli("runs", "prune", "--older-than", "30d")
    assert kept.exit_code == 0 and kept.stdout.startswith("pruned 0 run(s)")
    assert len(_run_ids(project)) == 2
    bad = project.cli("runs", "prune", "--older-than", "a month")
    assert bad.exit_code == 2
    assert "--older-than: invalid duration 'a month'" in bad.stderr and "Traceback" not in bad.output
