"""`orchestr approvals [list|show RUN]`, `orchestr approve RUN [STEP]`, `orchestr reject RUN [STEP]`."""

from __future__ import annotations

import signal
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from orchestr.cli.common import Format, console, handle_errors, print_json, project

if TYPE_CHECKING:
    from orchestr.project import Project
    from orchestr.store import RunRow

approvals_app = typer.Typer(help="Runs waiting for a person: what they ask, what they show.",
                            invoke_without_command=True)


def register(app: typer.Typer) -> None:
    app.add_typer(approvals_app, name="approvals")
    app.command("approve")(approve)
    app.command("reject")(reject)


@approvals_app.callback()
def _default(ctx: typer.Context, format: Annotated[Format, typer.Option("--format")] = Format.text) -> None:
    """Bare `orchestr approvals` is `orchestr approvals list`."""
    if ctx.invoked_subcommand is None:
        list_approvals(format=format)


@approvals_app.command("list")
@handle_errors
def list_approvals(format: Annotated[Format, typer.Option("--format")] = Format.text) -> None:
    """Approvals not yet acted on, oldest first."""
    from orchestr.approvals.records import ApprovalBook
    from orchestr.approvals.views import approvals_table
    from orchestr.events import utc_now
    from orchestr.store import open_store

    store = open_store(project())
    try:
        records = ApprovalBook(store).open()
    finally:
        store.close()
    if format is Format.json:
        print_json([r.to_json() for r in records])
    else:
        console().print(approvals_table(records, now=utc_now()))


@approvals_app.command("show")
@handle_errors
def show(
    run: Annotated[str, typer.Argument(help="Run id, a unique prefix, or `last`.")],
    format: Annotated[Format, typer.Option("--format")] = Format.text,
) -> None:
    """What a run's approval asks and shows: JSON pretty-printed, a diff when the file existed before the run."""
    from orchestr.approvals.decide import waiting_run
    from orchestr.approvals.records import ApprovalBook
    from orchestr.approvals.views import render_request
    from orchestr.errors import UsageError
    from orchestr.events import utc_now
    from orchestr.store import open_store

    proj = project()
    store = open_store(proj)
    try:
        row = waiting_run(store, run)
        records = ApprovalBook(store).of_run(row.id)
    finally:
        store.close()
    if not records:
        raise UsageError(f"run {row.id} has asked for no approval")
    if format is Format.json:
        print_json([r.to_json() for r in records])
        return
    out = console()
    for record in records[-1:] if len(records) == 1 else records:
        out.print(render_request(record, root=proj.root, work_dir=proj.state_dir / "runs" / row.id, now=utc_now()))


@approvals_app.command("resume", hidden=True)
@handle_errors
def resume(run: Annotated[str, typer.Argument()]) -> None:
    """Resume a decided run (what `approve --detach` starts)."""
    proj = project()
    raise typer.Exit(_resume(proj, _run(proj, run), quiet=True))


@handle_errors
def approve(
    run: Annotated[str, typer.Argument(help="The waiting run (id, unique prefix, or `last`).")],
    step: Annotated[str | None, typer.Argument(help="The approval step, when the run waits at several.")] = None,
    comment: Annotated[str | None, typer.Option("--comment", "-m", help="Why; recorded with the decision.")] = None,
    by: Annotated[str | None, typer.Option("--by", help="Who decides (default: the OS user).")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Resume the run in the background.")] = False,
) -> None:
    """Approve exactly what was shown, then resume the run (exit: the run's)."""
    _decide(run, step, decision="approved", comment=comment, by=by, detach=detach)


@handle_errors
def reject(
    run: Annotated[str, typer.Argument(help="The waiting run (id, unique prefix, or `last`).")],
    step: Annotated[str | None, typer.Argument(help="The approval step, when the run waits at several.")] = None,
    *,
    comment: Annotated[str, typer.Option("--comment", "-m", help="Why (required).")],
    by: Annotated[str | None, typer.Option("--by", help="Who decides (default: the OS user).")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Finish the run in the background.")] = False,
) -> None:
    """Reject: the step fails, its dependents are skipped, the run finishes failed (exit 1)."""
    _decide(run, step, decision="rejected", comment=comment, by=by, detach=detach)


def _decide(run: str, step: str | None, *, decision: str, comment: str | None, by: str | None, detach: bool) -> None:
    from orchestr.approvals.decide import decide
    from orchestr.events import utc_now
    from orchestr.store import open_store

    proj = project()
    store = open_store(proj)
    try:
        decided = decide(store, run, step, decision=decision, by=by, comment=comment,  # type: ignore[arg-type]
                         root=proj.root, now=utc_now())
    finally:
        store.close()
    if decided.decision == "timed-out":
        typer.echo(f"error: the approval of {decided.run.id} at step '{decided.record.step_id}' timed out at "
                   f"{decided.record.expires_at}: it can no longer be {decision}; the run now finishes failed", err=True)
    else:
        typer.echo(f"{decided.decision}: {decided.run.id} step {decided.record.step_id}, by {decided.by}", err=True)
    if detach:
        from orchestr.approvals.resume import launch_resume

        process = launch_resume(proj, decided.run)
        typer.echo(f"resuming in the background (pid {process.pid}); log: "
                   f"{proj.state_dir / 'logs' / (decided.run.workflow + '.log')}", err=True)
        return
    raise typer.Exit(_resume(proj, decided.run, quiet=False))


def _run(proj: Project, ref: str) -> RunRow:
    from orchestr.approvals.decide import waiting_run
    from orchestr.store import open_store

    store = open_store(proj)
    try:
        return waiting_run(store, ref)
    finally:
        store.close()


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _resume(proj: Project, run: RunRow, *, quiet: bool) -> int:
    """Resume in this process, with a trace like `orchestr run`'s; the run's exit code."""
    from orchestr.approvals.resume import resume_run
    from orchestr.compiler import compile_workflow
    from orchestr.errors import NotWaiting
    from orchestr.trace import PlainTrace, render_summary

    out = console()
    trace = PlainTrace(out, quiet=quiet)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        result = resume_run(proj, run, sinks=[trace], log_sinks=[trace], warn=lambda line: typer.echo(line, err=True))
    except NotWaiting as exc:
        typer.echo(str(exc), err=True)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    plan = compile_workflow(proj.find_workflow(run.workflow), proj.tree, proj.config)
    out.print(render_summary(plan, result.run_id, result.outcome))
    sys.stdout.flush()
    return int(result.outcome.exit_code)
