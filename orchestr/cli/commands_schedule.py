"""`orchestr tick`, `orchestr schedule list|export`, `orchestr status`"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from orchestr.cli.common import Format, console, handle_errors, print_json, project
from orchestr.errors import ExitCode, UsageError

schedule_app = typer.Typer(help="Schedules: list them, or export units for the host's scheduler.", no_args_is_help=True)


class ExportFormat(StrEnum):
    crontab = "crontab"
    systemd = "systemd"
    kubernetes = "kubernetes"
    github_actions = "github-actions"


def register(app: typer.Typer) -> None:
    app.command("tick")(tick)
    app.command("status")(status)
    app.add_typer(schedule_app, name="schedule")


def parse_now(text: str | None) -> datetime:
    """ISO 8601; without an offset it means UTC."""
    if text is None:
        return datetime.now(UTC)
    from orchestr.events import parse_iso

    try:
        value = parse_iso(text)
    except ValueError:
        raise UsageError(f"--now {text!r}: expected ISO 8601, e.g. 2026-11-24T08:00:00Z") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@handle_errors
def tick(
    now: Annotated[str | None, typer.Option("--now", help="Pretend it is TIME (ISO 8601; UTC without an offset).")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the runs it starts (CI, Kubernetes).")] = False,
    format: Annotated[Format, typer.Option("--format")] = Format.text,
) -> None:
    """Run whatever schedules are due, once each: for crontab or a systemd timer every minute."""
    from orchestr.store import open_store
    from orchestr.tick import tick as run_tick

    proj = project()
    store = open_store(proj)
    try:
        report = run_tick(proj, store, now=parse_now(now))
    finally:
        store.close()
    codes = [p.wait() for p in report.processes] if wait else []
    if format is Format.json:
        print_json({"now": report.now.isoformat(), "problems": report.problems, "stopped": report.stopped,
                    "slots": [{"workflow": a.workflow, "slot": a.slot.isoformat(), "action": a.action,
                               "outcome": a.outcome, "pid": a.pid} for a in report.actions]})
    else:
        out = console()
        for action in report.actions:
            out.print(f"{action.workflow} {action.slot.isoformat()}: {action.action}"
                      + (f" (pid {action.pid})" if action.pid else ""), soft_wrap=True)
        for problem in report.problems:
            typer.echo(problem, err=True)
    failed = [c for c in codes if c not in (0, ExitCode.BUSY)]
    raise typer.Exit(ExitCode.FAILED if report.problems or failed else ExitCode.OK)


@schedule_app.command("list")
@handle_errors
def list_schedules(
    next_count: Annotated[int, typer.Option("--next", "-n", min=0, help="How many upcoming slots to show.")] = 3,
    now: Annotated[str | None, typer.Option("--now")] = None,
    format: Annotated[Format, typer.Option("--format")] = Format.text,
) -> None:
    """Scheduled workflows: cron, zone, next slots, last slot and its outcome."""
    from orchestr.schedule_views import schedule_rows, schedules_table
    from orchestr.store import open_store

    proj = project()
    store = open_store(proj, read_only=True)
    try:
        rows = schedule_rows(proj, store, now=parse_now(now), count=next_count)
    finally:
        store.close()
    if format is Format.json:
        print_json(rows)
    else:
        console().print(schedules_table(rows))


@schedule_app.command("export")
@handle_errors
def export(
    format: Annotated[ExportFormat, typer.Option("--format", help="crontab, systemd, kubernetes or github-actions.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write file(s) into this folder.")] = None,
    image: Annotated[str, typer.Option("--image", help="Container image (kubernetes).")] = "ghcr.io/your-org/orchestr:latest",
    executable: Annotated[str | None, typer.Option("--executable", help="Path of orchestr on the host (crontab, systemd).")] = None,
    env_file: Annotated[Path | None, typer.Option(
        "--env-file", help="File of KEY=value lines with the API keys (crontab, systemd; default: STATE_DIR/env).")] = None,
    user: Annotated[str | None, typer.Option("--user", help="User= of the systemd units (default: you).")] = None,
    install: Annotated[str | None, typer.Option(
        "--install", help='Install step (github-actions), e.g. "pip install -e ." (default: as the repository pins orchestr).')] = None,
    now: Annotated[str | None, typer.Option("--now", help="Derive GitHub's UTC crons for the year from TIME (ISO 8601).")] = None,
) -> None:
    """Units for the host's scheduler, or CronJobs for a cluster."""
    from orchestr.schedule_views import ExportOptions, export_files

    proj = project()
    options = ExportOptions(image=image, now=parse_now(now), executable=executable, env_file=env_file,
                            install=install, user=user)
    exported = export_files(proj, format.value, options=options)
    for warning in exported.warnings:
        typer.echo(f"warning: {warning}", err=True)
    files = exported.files
    if output is None:
        for name, text in files.items():
            if len(files) > 1:
                typer.echo(f"# --- {name}")
            typer.echo(text, nl=not text.endswith("\n"))
        return
    output.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (output / name).write_text(text)
        typer.echo(f"wrote {output / name}")


@handle_errors
def status(
    grace: Annotated[str, typer.Option("--grace", help="How late a tick may be before a slot counts as missed.")] = "5m",
    now: Annotated[str | None, typer.Option("--now")] = None,
    format: Annotated[Format, typer.Option("--format")] = Format.text,
) -> None:
    """Health: exits 1 if a schedule missed a slot, a last run failed or was unverified, or a run is stuck."""
    from orchestr.health import check_workflow
    from orchestr.models import parse_duration
    from orchestr.schedule_views import health_table
    from orchestr.store import open_store
    from orchestr.tick import scheduled_workflows

    try:
        grace_td = parse_duration(grace)
    except ValueError as exc:
        raise UsageError(f"--grace: {exc}") from None
    assert isinstance(grace_td, timedelta)
    proj = project()
    workflows, problems = scheduled_workflows(proj)
    from orchestr.approvals.records import ApprovalBook
    from orchestr.approvals.views import status_lines

    store = open_store(proj)
    at = parse_now(now)
    try:
        report = [check_workflow(store, wf, now=at, grace=grace_td) for wf in workflows]
        waiting = ApprovalBook(store).open()
    finally:
        store.close()
    approval_lines, approval_problems = status_lines(waiting, now=at)  # only an overdue one is a problem
    problems += approval_problems
    healthy = all(h.ok for h in report) and not problems
    if format is Format.json:
        print_json({"ok": healthy, "workflows": [h.to_json() for h in report], "problems": problems,
                    "approvals": [r.to_json() for r in waiting]})
    else:
        console().print(health_table(report))
        for line in approval_lines:
            typer.echo(line)
        for problem in problems:
            typer.echo(problem, err=True)
    raise typer.Exit(ExitCode.OK if healthy else ExitCode.FAILED)
