"""What `orchestr schedule list|export` and `orchestr status` show: rows, tables, unit files."""

from __future__ import annotations

import getpass
import os
import shutil
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from rich.table import Table
from rich.text import Text

from orchestr.project import LoadedWorkflow, Project
from orchestr.store import Store
from orchestr.tick import scheduled_workflows

if TYPE_CHECKING:
    from orchestr.health import WorkflowHealth
    from orchestr.scheduling.export import Exported, Scheduled


@dataclass(frozen=True)
class ExportOptions:
    image: str
    now: datetime
    executable: str | None = None
    env_file: Path | None = None
    install: str | None = None
    user: str | None = None


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
            "last_host": _slot_host(store, settled[0]) if settled else None,
        })
    return rows


def _slot_host(store: Store, slot: dict[str, Any]) -> str | None:
    """The machine that served a slot: its run's host, else the host of the tick that claimed it."""
    run = store.run(str(slot["run_id"])) if slot.get("run_id") else None
    if run is not None and run.host:
        return run.host
    return str(slot["claimed_by"]).rpartition(":")[0] or None


def schedules_table(rows: list[dict[str, Any]]) -> Table:
    table = Table(title="schedules", title_justify="left")
    for column in ("workflow", "cron", "zone", "next", "last slot", "outcome", "host"):
        table.add_column(column, no_wrap=column in ("next", "cron"))
    for row in rows:
        outcome = row["last_outcome"] or "-"
        style = "green" if outcome == "ran" else ("dim" if outcome.startswith("skipped") or outcome == "-" else "red")
        table.add_row(row["workflow"], row["cron"], row["timezone"], "\n".join(row["next"]) or "-",
                      row["last_slot"] or "-", Text(outcome, style=style), row["last_host"] or "-")
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


def export_files(project: Project, kind: str, *, options: ExportOptions) -> Exported:
    from orchestr.scheduling import export

    workflows, _ = scheduled_workflows(project)
    pairs = [(w.name, w.spec.schedule) for w in workflows if w.spec.schedule is not None]
    if kind == "kubernetes":
        from orchestr.store import state_url

        cluster = export.Cluster(project=project.root.name, state_dir=PurePosixPath(project.config.state_dir),
                                 image=options.image, shared_state=state_url(project)[0] is not None)
        return export.kubernetes(pairs, cluster)
    if kind == "github-actions":
        return _github_actions(project, workflows, pairs, options)
    exe = (options.executable,) if options.executable else _installed_executable()
    host = export.Host(root=project.root, state_dir=project.state_dir, exe=exe, user=options.user or getpass.getuser(),
                       env_file=Path(os.path.abspath(options.env_file or project.state_dir / "env")))
    if kind == "crontab":
        return export.Exported({"crontab": export.crontab(host, pairs)})
    return export.Exported(export.systemd(host, pairs))


def _github_actions(project: Project, workflows: list[LoadedWorkflow], pairs: Scheduled,
                    options: ExportOptions) -> Exported:
    from orchestr.scheduling import export_github

    root = project.root.resolve()
    repo = _repository_root(root)
    state = project.state_dir.resolve()
    state_dir = state.relative_to(repo).as_posix() if state.is_relative_to(repo) else str(state)
    secrets = export_github.declared_secrets(project.config, [w.spec for w in workflows])
    install = options.install or export_github.install_command(_pinning_files(project.root))
    return export_github.github_actions(pairs, install=install, secrets=secrets, state_dir=state_dir,
                                        start=options.now, project_dir=root.relative_to(repo).as_posix())


def _repository_root(start: Path) -> Path:
    """The git work tree holding the project (GitHub checks it out), else the project itself."""
    for folder in (start, *start.parents):
        if (folder / ".git").exists():
            return folder
    return start


def _pinning_files(root: Path) -> dict[str, str]:
    """The files that say how the repository installs orchestr (requirements*.txt, pyproject.toml)."""
    found = {}
    for path in sorted([*root.glob("requirements*.txt"), root / "pyproject.toml"]):
        try:
            found[path.name] = path.read_text(encoding="utf-8", errors="replace")[:200_000]
        except OSError:
            continue
    return found


def _installed_executable() -> tuple[str, ...]:
    """This orchestr's own console script (its virtualenv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "orchestr"
    if beside.is_file():
        return (str(beside),)
    found = shutil.which("orchestr")
    return (found,) if found else (sys.executable, "-m", "orchestr")
