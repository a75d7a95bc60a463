"""`orchestr run WORKFLOW ...`"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from orchestr.cli.common import console, handle_errors, project
from orchestr.cli.completion import complete_run, complete_workflow

if TYPE_CHECKING:
    from rich.console import Console

    from orchestr.plan import Plan
    from orchestr.project import Project
    from orchestr.runner import RunControl
    from orchestr.trace import PlainTrace


def register(app: typer.Typer) -> None:
    app.command("run")(run)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def _stopping_on_signals(control: RunControl) -> Iterator[None]:
    """Ctrl-C and SIGTERM, however many, ask the run to stop once; none raises into the run."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if control.stop("cancelled"):
            sys.stderr.write(f"\n{signal.Signals(signum).name}: cancelling the run "
                             "(steps get SIGTERM, then SIGKILL after the grace)\n")
            sys.stderr.flush()

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@handle_errors
def run(
    workflow: Annotated[str, typer.Argument(help="A workflow's name or its file's path.", metavar="WORKFLOW",
                                             autocompletion=complete_workflow)],
    inputs: Annotated[list[str] | None, typer.Option("--input", "-i", help="An input as key=value (repeatable).")] = None,
    max_parallel: Annotated[int | None, typer.Option("--max-parallel", min=1, help="Steps at once (default 8).")] = None,
    events: Annotated[Path | None, typer.Option("--events", help="Write JSON-lines events to FILE.")] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write a JUnit XML report to FILE.")] = None,
    resume: Annotated[str | None, typer.Option("--resume", help="Resume RUN (or `last`): re-run unverified steps.",
                                                         metavar="RUN", autocompletion=complete_run)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Compile and show the plan; run nothing.")] = False,
    record: Annotated[Path | None, typer.Option("--record", help="Record every model exchange to FILE.")] = None,
    replay: Annotated[Path | None, typer.Option("--replay", help="Replay model exchanges from FILE: no network, no key.")] = None,
    attach: Annotated[list[Path] | None, typer.Option("--attach", help="Add FILE to every agent prompt (repeatable).")] = None,
    allow: Annotated[list[str] | None, typer.Option("--allow", help="Grant KEY:VALUE for this run, within the context ceiling.")] = None,
    drain: Annotated[bool, typer.Option("--drain", hidden=True)] = False,
    trigger: Annotated[str, typer.Option("--trigger", hidden=True)] = "manual",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only a verdict line and the steps that did not succeed.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also the steps' output lines.")] = False,
) -> None:
    """Run a workflow once, with a live trace; exit 0/1/2/3/75 (see README)."""
    from orchestr.compiler import compile_workflow
    from orchestr.dotenv import with_dotenv
    from orchestr.errors import UsageError
    from orchestr.runner import (
        RunControl,
        RunRequest,
        close_runners,
        execute,
        parse_inputs,
        runners_for,
    )
    from orchestr.trace import LiveTrace, render_summary

    if record and replay:
        raise UsageError("--record and --replay cannot be used together")
    proj = project()
    if drain:
        raise typer.Exit(_drain(proj, workflow, verbose=verbose))
    plan = compile_workflow(proj.find_workflow(workflow), proj.tree, proj.config)
    from orchestr.review.lockfile import guard_run

    guard_run(proj, plan, warn=lambda line: typer.echo(line, err=True))
    out = console()
    if dry_run:
        from orchestr.render import render_plan

        parse_inputs(plan.spec.inputs, inputs or [])
        out.print(render_plan(plan, width=out.width))
        return
    if resume and inputs:
        raise UsageError("--resume re-runs with the inputs of the run it resumes; drop the -i options")
    if not resume:
        parse_inputs(plan.spec.inputs, inputs or [])  # a bad input is reported before a missing API key
    _check_outputs(events=events, junit=junit, record=record)
    env = with_dotenv(proj.root, os.environ)
    runners = runners_for(plan, record=record, replay=replay, attach=list(attach or []), allow=list(allow or []),
                          env=env)
    request = RunRequest(inputs=inputs or [], max_parallel=max_parallel, events_file=events, junit_file=junit,
                         resume=resume, trigger=trigger, record=record, replay=replay,
                         attach=list(attach or []), allow=list(allow or []), env=env, control=RunControl())
    live = out.is_terminal and not quiet
    trace = LiveTrace(out, verbose=verbose) if live else ci_trace(out, plan, verbose=verbose, quiet=quiet)
    with _stopping_on_signals(request.control or RunControl()):
        try:
            if isinstance(trace, LiveTrace):
                with trace:
                    result = execute(proj, plan, request, runners=runners, sinks=[trace], log_sinks=[trace])
            else:
                result = execute(proj, plan, request, runners=runners, sinks=[trace], log_sinks=[trace])
        finally:
            close_runners(runners)
        out.print(render_summary(plan, result.run_id, result.outcome, quiet=quiet))
        sys.stdout.flush()
    raise typer.Exit(int(result.outcome.exit_code))


def _check_outputs(*, events: Path | None, junit: Path | None, record: Path | None) -> None:
    """Each output path writable before anything runs (exit 2), so no work is lost to a bad path."""
    from orchestr.writable import check_output_file

    for option, path in (("--events", events), ("--junit", junit), ("--record", record)):
        if path is not None:
            check_output_file(option, path)


def heartbeat_seconds() -> float | None:
    """ORCHESTR_HEARTBEAT_SECONDS (default 30; 0 switches the CI heartbeat off)."""
    import os

    from orchestr.errors import UsageError
    from orchestr.observability.ci import DEFAULT_HEARTBEAT_SECONDS

    text = os.environ.get("ORCHESTR_HEARTBEAT_SECONDS", "")
    try:
        seconds = float(text) if text else DEFAULT_HEARTBEAT_SECONDS
    except ValueError:
        raise UsageError(f"ORCHESTR_HEARTBEAT_SECONDS={text!r}: expected a number of seconds (0 for none)") from None
    return seconds if seconds > 0 else None


def ci_trace(out: Console, plan: Plan, *, verbose: bool, quiet: bool) -> PlainTrace:
    """Not a terminal: the plain trace with a heartbeat, in GitHub Actions with groups and annotations."""
    import os

    from orchestr.observability.ci import CiTrace, GitHubTrace, step_lines
    from orchestr.trace import PlainTrace

    if quiet:
        return PlainTrace(out, quiet=True)
    if os.environ.get("GITHUB_ACTIONS") == "true":
        return GitHubTrace(out, file=plan.display, lines=step_lines(plan.path), verbose=verbose,
                           heartbeat=heartbeat_seconds())
    return CiTrace(out, verbose=verbose, heartbeat=heartbeat_seconds())


def _drain(proj: Project, workflow: str, *, verbose: bool) -> int:
    """`--drain` (started by `orchestr tick`): serve the workflow's owed slots; output goes to its log."""
    import os

    from orchestr.dotenv import with_dotenv
    from orchestr.observability.ci import CiTrace
    from orchestr.scheduling.serve import serve_workflow

    out = console()
    every = heartbeat_seconds()

    def sinks() -> tuple[list[CiTrace], list[CiTrace]]:
        trace = CiTrace(out, verbose=verbose, heartbeat=every)
        return [trace], [trace]

    from orchestr.runner import RunControl

    control = RunControl()

    def handler(signum: int, frame: FrameType | None) -> None:
        # In a run: one orderly stop, however many signals. Waiting for a turn: stop waiting.
        if control.stop("cancelled") and not control.attached:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        return serve_workflow(proj, workflow, sinks=sinks, env=with_dotenv(proj.root, os.environ), control=control,
                              say=lambda line: out.print(line, soft_wrap=True))
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
