"""What `orchestr schedule list|export` and `orchestr status` show: rows, tables, unit files."""

from __future__ import annotations

import shutil
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from rich.table import Table
from rich.text import Text

from orchestr.project import Project
from orchestr.store import Store
from orchestr.tick import scheduled_workflows

if TYPE_CHECKING:
    from orchestr.health import WorkflowHealth


def schedule_rows(project: Project, store: Store, *, now: datetime, count: int) -> list[dict[str, Any]]:
    from orchestr.scheduling.slots import next_slots

    rows = []
    workflows, _ = scheduled_workflows(project)
    for workflow in workflows:
        schedule = workflow.spec.schedule
        assert schedule is not None
        zone = ZoneInfo(schedule.timezone)
        upcoming = [s.astimezone(zone).isoformat() for s in next_slots(schedule.cron, schedule.timezone, now, count)]
        settled = [s for s in store.slots(workflow.name, limit=20) if s["outcome"]]
        rows.append({
            "workflow": workflow.name, "cron": schedule.cron, "timezone": schedule.timezone,
            "catchup": schedule.catchup, "overlap": schedule.overlap,
            "deadline": schedule.deadline.total_seconds() if schedule.deadline else None,
            "next": upcoming,
            "last_slot": settled[0]["slot"] if settled else None,
            "last_outcome": settled[0]["outcome"] if settled else None,
        })
    return rows


def schedules_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="schedules", title_justify="left")
    for column in ("workflow", "cron", "zone", "next", "last slot", "outcome"):
        table.add_column(column, no_wrap=column in ("next", "cron"))
    for row in rows:
        outcome = row["last_outcome"] or "-"
        style = "green" if outcome == "ran" else ("dim" if outcome.startswith("skipped") or outcome == "-" else "red")
        table.add_row(row["workflow"], row["cron"], row["timezone"], "\n".join(row["next"]) or "-",
                      row["last_slot"] or "-", Text(outcome, style=style))
    if not rows:
        table.caption = "no workflow has a schedule"
    return table


def health_table(report: list[WorkflowHealth]) -> Table:
    table = Table(title="status", title_justify="left")
    for column in ("workflow", "health", "last tick", "last slot", "outcome", "why"):
        table.add_column(column)
    for health in report:
        table.add_row(health.workflow, Text("ok" if health.ok else "FAIL", style="green" if health.ok else "bold red"),
                      health.last_tick or "never", health.last_slot or "-", health.last_outcome or "-",
                      "\n".join(health.problems) or "-")
    if not report:
        table.caption = "no workflow has a schedule"
    return table


def export_files(project: Project, kind: str, *, image: str, executable: str | None) -> dict[str, str]:
    from orchestr.scheduling import export

    workflows, _ = scheduled_workflows(project)
    pairs = [(w.name, w.spec.schedule) for w in workflows if w.spec.schedule is not None]
    exe = executable or _installed_executable()
    root = project.root
    if kind == "crontab":
        return {"crontab": export.crontab(root, exe, pairs)}
    if kind == "systemd":
        return export.systemd(root, exe, pairs)
    if kind == "kubernetes":
        return {"cronjobs.yaml": export.kubernetes(root, pairs, image=image)}
    return {"orchestr-tick.yml": export.github_actions(pairs)}


def _installed_executable() -> str:
    """This orchestr's own console script (its virtualenv's), else the one on PATH."""
    from pathlib import Path

    beside = Path(sys.executable).parent / "orchestr"
    if beside.is_file():
        return str(beside)
    return shutil.which("orchestr") or f"{sys.executable} -m orchestr"
