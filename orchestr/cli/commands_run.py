"""`orchestr run WORKFLOW ...`"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer

from orchestr.cli.common import console, handle_errors, project
from orchestr.cli.completion import complete_run, complete_workflow

if TYPE_CHECKING:
    from orchestr.project import Project


def register(app: typer.Typer) -> None:
    app.command("run")(run)


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


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
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only the summary.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also the steps' output lines.")] = False,
) -> None:
    """Run a workflow once, with a live trace; exit 0/1/2/3/75 (see README)."""
    from orchestr.compiler import compile_workflow
    from orchestr.dotenv import with_dotenv
    from orchestr.errors import UsageError
    from orchestr.runner import RunRequest, close_runners, execute, parse_inputs, runners_for
    from orchestr.trace import LiveTrace, PlainTrace, render_summary

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
    env = with_dotenv(proj.root, os.environ)
    runners = runners_for(plan, record=record, replay=replay, attach=list(attach or []), allow=list(allow or []),
                          env=env)
    request = RunRequest(inputs=inputs or [], max_parallel=max_parallel, events_file=events, junit_file=junit,
                         resume=resume, trigger=trigger, record=record, replay=replay,
                         attach=list(attach or []), allow=list(allow or []), env=env)
    live = out.is_terminal and not quiet
    trace = LiveTrace(out, verbose=verbose) if live else PlainTrace(out, verbose=verbose, quiet=quiet)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        if isinstance(trace, LiveTrace):
            with trace:
                result = execute(proj, plan, request, runners=runners, sinks=[trace], log_sinks=[trace])
        else:
            result = execute(proj, plan, request, runners=runners, sinks=[trace], log_sinks=[trace])
    finally:
        signal.signal(signal.SIGTERM, previous)
        close_runners(runners)
    out.print(render_summary(plan, result.run_id, result.outcome))
    sys.stdout.flush()
    raise typer.Exit(int(result.outcome.exit_code))


def _drain(proj: Project, workflow: str, *, verbose: bool) -> int:
    """`--drain` (started by `orchestr tick`): serve the workflow's owed slots; output goes to its log."""
    from orchestr.dotenv import with_dotenv
    from orchestr.scheduling.serve import serve_workflow
    from orchestr.trace import PlainTrace

    out = console()

    def sinks() -> tuple[list[PlainTrace], list[PlainTrace]]:
        trace = PlainTrace(out, verbose=verbose, quiet=False)
        return [trace], [trace]

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return serve_workflow(proj, workflow, sinks=sinks, env=with_dotenv(proj.root, os.environ), say=lambda line: out.print(line, soft_wrap=True))
    finally:
        signal.signal(signal.SIGTERM, previous)
