"""A user's repository: orchestr.yaml, contexts/ and workflows/, found and loaded from disk."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from orchestr.context import ContextTree, load_tree
from orchestr.errors import Diagnostic, Span, UsageError, ValidationFailed, did_you_mean
from orchestr.governance import Governance
from orchestr.models import ProjectConfig, WorkflowSpec
from orchestr.source import Document, load_yaml
from orchestr.spec import decode

CONFIG_FILE = "orchestr.yaml"
WORKFLOWS_DIR = "workflows"


@dataclass(frozen=True)
class LoadedWorkflow:
    name: str
    path: Path
    display: str
    spec: WorkflowSpec
    doc: Document


def find_root(start: Path) -> Path:
    """The nearest folder at or above `start` holding orchestr.yaml or workflows/."""
    start = start.resolve()
    for folder in (start, *start.parents):
        if (folder / CONFIG_FILE).is_file() or (folder / WORKFLOWS_DIR).is_dir():
            return folder
    return start


def display_path(path: Path) -> str:
    """How a path appears in messages: relative to the working directory when inside it."""
    try:
        return path.resolve().relative_to(_cwd()).as_posix()
    except ValueError:
        return str(path)


def _cwd() -> Path:
    """The resolved working directory, resolved once per directory (not once per file shown)."""
    return _resolved(os.getcwd())


@functools.lru_cache(maxsize=8)
def _resolved(directory: str) -> Path:
    return Path(directory).resolve()


@dataclass(frozen=True)
class Project:
    root: Path

    @cached_property
    def config(self) -> ProjectConfig:
        path = self.root / CONFIG_FILE
        if not path.is_file():
            return ProjectConfig()
        doc = load_yaml(path, display=display_path(path))
        config = decode(doc, ProjectConfig, what="project config")
        problems = reach_problems(doc, config)
        problem = _default_model_problem(config, doc)
        if problem is not None:
            problems = [*problems, problem]
        if problems:
            raise ValidationFailed(problems)
        return config

    @cached_property
    def tree(self) -> ContextTree:
        try:
            governance = Governance.for_state_dir(self.config.state_dir)
        except ValidationFailed:  # reported by whoever reads the config; the tree is checked on its own
            governance = Governance.for_state_dir()
        return load_tree(self.root, display_root=_prefix(self.root), governance=governance)

    @property
    def state_dir(self) -> Path:
        return self.root / self.config.state_dir

    def workflow_files(self) -> list[Path]:
        folder = self.root / WORKFLOWS_DIR
        if not folder.is_dir():
            return []
        return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])

    def load_workflow(self, path: Path) -> LoadedWorkflow:
        display = display_path(path)
        doc = load_yaml(path, display=display)
        spec = decode(doc, WorkflowSpec, what="workflow")
        return LoadedWorkflow(spec.name or path.stem, path, display, spec, doc)

    def find_workflow(self, ref: str) -> LoadedWorkflow:
        """WORKFLOW is a workflow's name or its file's path."""
        as_path = Path(ref)
        if as_path.suffix in (".yaml", ".yml") or os.sep in ref:
            if not as_path.is_file():
                raise UsageError(f"{ref}: workflow file not found")
            return self.load_workflow(as_path)
        for path in self.workflow_files():
            if path.stem == ref:
                return self.load_workflow(path)
        names = self.workflow_names()
        if ref in names:
            return self.load_workflow(names[ref])
        suggestion = did_you_mean(ref, set(names))
        known = ", ".join(sorted(names)) or f"none: {WORKFLOWS_DIR}/ has no workflow files"
        raise UsageError(
            f"unknown workflow '{ref}'" + (f"; {suggestion}" if suggestion else "") + f" (known: {known})"
        )

    def workflow_names(self) -> dict[str, Path]:
        """Each workflow's name (its `name:` or file stem) to its file; unreadable files by stem."""
        names: dict[str, Path] = {}
        for path in self.workflow_files():
            try:
                names[self.load_workflow(path).name] = path
            except ValidationFailed:
                names[path.stem] = path
        return names


def _default_model_problem(config: ProjectConfig, doc: Document) -> Diagnostic | None:
    """A provider typo in orchestr.yaml's defaults.model, reported once, where it is written."""
    from orchestr.compiler import BUILTIN_PROVIDERS

    model = config.defaults.model
    provider = model.partition(":")[0] if model else None
    providers = {*BUILTIN_PROVIDERS, *config.providers}
    if provider is None or provider in providers:
        return None
    suggestion = did_you_mean(provider, providers)
    return Diagnostic(
        doc.span(("defaults", "model")),
        f"unknown provider '{provider}' in model '{model}'" + (f"; {suggestion}" if suggestion else ""),
        hint=f"built in: {', '.join(BUILTIN_PROVIDERS)}; declare others under providers: in this file",
    )


def _prefix(root: Path) -> str:
    shown = display_path(root)
    return "" if shown in ("", ".") else shown.rstrip("/") + "/"


def reach_problems(doc: Document, config: ProjectConfig) -> list[Diagnostic]:
    """An MCP server's `reach.write` may not cover a governance path either, as the sandbox enforces it:
    it binds folders, so `*.md` makes the project root writable."""
    from orchestr.reach import dir_glob, write_dir

    governance = Governance.for_state_dir(config.state_dir)
    problems = []
    for name, server in config.mcp_servers.items():
        for i, pattern in enumerate(server.reach.write if server.reach is not None else ()):
            enforced = dir_glob(write_dir(pattern))
            covered = governance.covered_by(pattern) or governance.covered_by(enforced)
            if covered is None:
                continue
            widened = f" (the sandbox makes its folder writable: {enforced})" if enforced != pattern else ""
            problems.append(Diagnostic(
                doc.span(("mcp_servers", name, "reach", "write", i)),
                f"mcp_servers.{name}.reach.write lists '{pattern}'{widened}, which covers a governance path",
                hint=governance.hint(enforced, covered).replace("no agent may write", "no server may write")))
    return problems


def no_workflows(root: Path) -> Diagnostic:
    folder = root / WORKFLOWS_DIR
    found = "no workflow files (*.yaml) found" if folder.is_dir() else f"no {WORKFLOWS_DIR}/ folder in this project"
    return Diagnostic(
        Span(display_path(folder)),
        found,
        hint=f"add a workflow as {WORKFLOWS_DIR}/NAME.yaml (see `orchestr schema workflow`)",
    )


def workflow_log(state_dir: Path, workflow: str) -> Path:
    """Where a scheduled workflow's detached runs write their output."""
    return state_dir / "logs" / f"{workflow}.log"
