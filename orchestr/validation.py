"""`orchestr validate`: check config, contexts and workflows, collecting every problem."""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path

from orchestr.errors import Diagnostic, Span, ValidationFailed
from orchestr.project import CONFIG_FILE, LoadedWorkflow, Project, find_root, no_workflows


@dataclass
class Report:
    diagnostics: list[Diagnostic] = field(default_factory=list)
    workflows: list[str] = field(default_factory=list)
    contexts: int = 0

    @property
    def ok(self) -> bool:
        return not any(d.severity == "error" for d in self.diagnostics)

    def collect(self, exc: ValidationFailed) -> None:
        self.diagnostics.extend(exc.diagnostics)


def validate_paths(paths: list[Path], *, default_root: Path) -> Report:
    report = Report()
    if not paths:
        _validate_project(Project(default_root), report)
    for path in paths:
        if path.is_dir():
            _validate_project(Project(path.resolve()), report)
        elif not path.exists():
            report.diagnostics.append(_missing(path))
        else:
            _validate_file(path, report)
    report.diagnostics.sort(key=lambda d: (d.span, d.message))
    return report


def _missing(path: Path) -> Diagnostic:
    # compare stems: every workflow ends in .yaml, which would make any two names look close
    try:
        siblings = {p.stem: p.name for p in path.parent.iterdir()}
    except OSError:
        siblings = {}
    close = difflib.get_close_matches(path.stem, list(siblings), n=1, cutoff=0.6)
    return Diagnostic(
        Span(str(path)),
        "no such file or directory" + (f"; did you mean '{path.parent / siblings[close[0]]}'?" if close else ""),
        hint="check the path; `orchestr validate` with no argument checks the whole project",
    )


def _validate_project(project: Project, report: Report) -> None:
    _load_shared(project, report)
    files = project.workflow_files()
    if not files:
        report.diagnostics.append(no_workflows(project.root))
    named: dict[str, LoadedWorkflow] = {}
    for path in files:
        workflow = _validate_workflow(project, path, report)
        if workflow is None:
            continue
        if workflow.name in named:
            report.diagnostics.append(_name_taken(workflow, named[workflow.name]))
        else:
            named[workflow.name] = workflow


def _name_taken(workflow: LoadedWorkflow, first: LoadedWorkflow) -> Diagnostic:
    """Two workflows of one name would share a lock, run records and a schedule ledger."""
    explicit = workflow.spec.name is not None
    return Diagnostic(
        workflow.doc.span(("name",) if explicit else ()),
        f"workflow name '{workflow.name}'" + ("" if explicit else " (this file's stem)")
        + f" is already used by {first.display}",
        hint="workflow names must be unique: a name keys its lock, run records and schedule ledger; "
        + ("rename one of them with `name:`" if explicit else "give one of them another `name:`"),
    )


def _name_taken_elsewhere(project: Project, workflow: LoadedWorkflow) -> Diagnostic | None:
    for path in project.workflow_files():
        if path.resolve() == workflow.path.resolve():
            continue
        try:
            other = project.load_workflow(path)
        except ValidationFailed:
            continue  # reported when that file is validated
        if other.name == workflow.name:
            return _name_taken(workflow, other)
    return None


def _load_shared(project: Project, report: Report) -> bool:
    """Config and tree; False if either is broken (workflows are then checked for shape only)."""
    ok = True
    try:
        _ = project.config
    except ValidationFailed as exc:
        report.collect(exc)
        ok = False
    try:
        report.contexts = len(project.tree.nodes)
    except ValidationFailed as exc:
        report.collect(exc)
        ok = False
    return ok


def _validate_workflow(project: Project, path: Path, report: Report, *,
                       shared_ok: bool | None = None) -> LoadedWorkflow | None:
    """The workflow, once it loaded (even if it does not compile); None if it did not load."""
    from orchestr.compiler import compile_workflow

    try:
        workflow = project.load_workflow(path)
    except ValidationFailed as exc:
        report.collect(exc)
        return _salvaged(project, path, report, shared_ok=shared_ok)
    try:
        if shared_ok is not False and _shared_loaded(project):
            compile_workflow(workflow, project.tree, project.config)
        report.workflows.append(workflow.name)
    except ValidationFailed as exc:
        report.collect(exc)
    return workflow


def _salvaged(project: Project, path: Path, report: Report, *, shared_ok: bool | None) -> LoadedWorkflow | None:
    """A workflow that failed to load: its other errors too, in this same pass."""
    from orchestr.compiler import compile_workflow
    from orchestr.salvage import salvage_workflow

    salvage = salvage_workflow(path)
    problems, workflow = list(salvage.problems), salvage.workflow
    if workflow is not None and shared_ok is not False and _shared_loaded(project):
        try:
            compile_workflow(workflow, project.tree, project.config)
        except ValidationFailed as exc:
            problems += filter(salvage.keeps, exc.diagnostics)
    seen = {d.span for d in report.diagnostics} | {(d.span, d.message) for d in report.diagnostics}
    for problem in problems:
        if problem.span not in seen and (problem.span, problem.message) not in seen:
            seen.add(problem.span)
            report.diagnostics.append(problem)
    return workflow


def _shared_loaded(project: Project) -> bool:
    try:
        _ = project.config, project.tree
    except ValidationFailed:
        return False
    return True


def _validate_file(path: Path, report: Report) -> None:
    project = Project(find_root(path.parent))
    resolved = path.resolve()
    if path.name == CONFIG_FILE or (project.root / "contexts") in resolved.parents:
        _load_shared(project, report)
    else:
        shared_ok = _load_shared(project, report)
        workflow = _validate_workflow(project, path, report, shared_ok=shared_ok)
        taken = _name_taken_elsewhere(project, workflow) if workflow is not None else None
        if taken is not None:
            report.diagnostics.append(taken)
