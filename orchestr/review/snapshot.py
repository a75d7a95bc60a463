"""A project as compiled plans: as it is on disk, or as it was at a git REF.

A REF is read from git's objects (`git ls-tree` + `git cat-file --batch`) into a temporary folder,
never by checking anything out: the working tree, the index and HEAD are left alone. Only what
compiling needs is written there: orchestr.yaml, contexts/, workflows/ and the files they attach.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orchestr.context import CONTEXTS_DIR, ContextTree, load_tree
from orchestr.errors import Diagnostic, UsageError, ValidationFailed
from orchestr.models import ProjectConfig, WorkflowSpec
from orchestr.plan import Plan
from orchestr.project import CONFIG_FILE, WORKFLOWS_DIR, LoadedWorkflow, Project
from orchestr.source import load_yaml
from orchestr.spec import decode

WORKING_TREE = "working tree"
_GOVERNED = (CONTEXTS_DIR + "/", WORKFLOWS_DIR + "/")


@dataclass(frozen=True)
class Snapshot:
    """Every workflow of a project compiled, by name; `problems` holds what did not compile."""

    label: str
    root: Path
    config: ProjectConfig
    tree: ContextTree | None
    plans: Mapping[str, Plan]
    problems: tuple[Diagnostic, ...] = ()


def load_snapshot(project: Project, *, label: str = WORKING_TREE, display: str = "",
                  strict: bool = True) -> Snapshot:
    """Compile every workflow; with `strict`, any problem raises ValidationFailed (all of them)."""
    from orchestr.compiler import compile_workflow

    problems: list[Diagnostic] = []
    config, tree = _shared(project, display, problems)
    plans: dict[str, Plan] = {}
    for path in project.workflow_files():
        try:
            workflow = _load_workflow(project, path, display)
            if config is None or tree is None:
                continue
            plan = compile_workflow(workflow, tree, config)
        except ValidationFailed as exc:
            problems.extend(exc.diagnostics)
            continue
        if plan.workflow in plans:
            problems.append(Diagnostic(workflow.doc.span(), f"workflow name '{plan.workflow}' is used twice",
                                       hint="workflow names must be unique (see `orchestr validate`)"))
            continue
        plans[plan.workflow] = plan
    errors = [p for p in problems if p.severity == "error"]
    if strict and errors:
        raise ValidationFailed(errors)
    return Snapshot(label, project.root, config or ProjectConfig(), tree, dict(sorted(plans.items())), tuple(errors))


def _shared(project: Project, display: str, problems: list[Diagnostic]) -> tuple[ProjectConfig | None, ContextTree | None]:
    config: ProjectConfig | None = None
    tree: ContextTree | None = None
    path = project.root / CONFIG_FILE
    try:
        config = (decode(load_yaml(path, display=display + CONFIG_FILE), ProjectConfig, what="project config")
                  if display and path.is_file() else project.config)
    except ValidationFailed as exc:
        problems.extend(exc.diagnostics)
    try:
        tree = load_tree(project.root, display_root=display) if display else project.tree
    except ValidationFailed as exc:
        problems.extend(exc.diagnostics)
    return config, tree


def _load_workflow(project: Project, path: Path, display: str) -> LoadedWorkflow:
    if not display:
        return project.load_workflow(path)
    shown = display + path.relative_to(project.root).as_posix()
    doc = load_yaml(path, display=shown)
    spec = decode(doc, WorkflowSpec, what="workflow")
    return LoadedWorkflow(spec.name or path.stem, path, shown, spec, doc)


# --- a project at a git REF -------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    mode: str
    sha: str
    path: str


@contextmanager
def checkout(root: Path, ref: str) -> Iterator[Project]:
    """The project at `ref` (its folder inside the repository), in a temporary folder."""
    commit = _resolve(root, ref)
    entries = {e.path: e for e in _ls_tree(root, commit)}
    folder = Path(tempfile.mkdtemp(prefix="orchestr-impact-", dir=_scratch()))
    try:
        governed = [e for p, e in entries.items() if p == CONFIG_FILE or p.startswith(_GOVERNED)]
        _write(root, folder, governed)
        attached = sorted(_attached_files(folder) - {e.path for e in governed})
        _write(root, folder, [entries[p] for p in attached if p in entries])
        yield Project(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _scratch() -> str | None:
    """Memory-backed /dev/shm when there is one (creating hundreds of small files on a journaled
    disk costs more than compiling them), unless TMPDIR says where temporary files go."""
    shm = "/dev/shm"
    if "TMPDIR" not in os.environ and os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK):
        return shm
    return None


def _git(root: Path, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(["git", "-C", str(root), *args], input=stdin, capture_output=True, check=False)
    except FileNotFoundError:
        raise UsageError("git is not installed: `impact --base` reads the base from git") from None


def _resolve(root: Path, ref: str) -> str:
    if ref.startswith("-"):
        raise UsageError(f"--base {ref!r}: a git ref cannot start with '-'")
    inside = _git(root, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0:
        raise UsageError(f"{root} is not inside a git repository: `impact --base REF` compares with a git REF")
    found = _git(root, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if found.returncode != 0:
        raise UsageError(f"unknown git ref '{ref}': name a branch, tag or commit (e.g. main, origin/main, HEAD~1)")
    return found.stdout.decode().strip()


def _ls_tree(root: Path, commit: str) -> list[_Entry]:
    """The files under the project's folder at `commit`, with paths relative to it."""
    listed = _git(root, "ls-tree", "-r", "-z", commit)
    if listed.returncode != 0:
        raise UsageError(f"git ls-tree {commit} failed: {listed.stderr.decode().strip()}")
    entries = []
    for record in listed.stdout.decode("utf-8", errors="surrogateescape").split("\0"):
        if not record:
            continue
        meta, _, path = record.partition("\t")
        mode, kind, sha = meta.split()
        if kind == "blob":
            entries.append(_Entry(mode, sha, path))
    return entries


def _write(root: Path, folder: Path, entries: list[_Entry]) -> None:
    """Write blobs with one `git cat-file --batch`; symlinks stay symlinks (escapes are refused later)."""
    if not entries:
        return
    batch = _git(root, "cat-file", "--batch", stdin="".join(f"{e.sha}\n" for e in entries).encode())
    if batch.returncode != 0:
        raise UsageError(f"git cat-file failed: {batch.stderr.decode().strip()}")
    data, at = batch.stdout, 0
    for entry in entries:
        header_end = data.index(b"\n", at)
        header = data[at:header_end].split()
        if len(header) != 3:  # "<sha> missing": a shallow or partial clone lacks the object
            raise UsageError(f"git has no object for {entry.path} ({entry.sha}): fetch the base's history "
                             "(e.g. `git fetch --unshallow`, or actions/checkout with fetch-depth: 0)")
        size = int(header[2])
        content = data[header_end + 1 : header_end + 1 + size]
        at = header_end + 2 + size
        target = folder / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if entry.mode == "120000":
            target.symlink_to(content.decode("utf-8", errors="surrogateescape"))
        else:
            target.write_bytes(content)


def _attached_files(folder: Path) -> set[str]:
    """The `files:` that contexts and agent steps attach (a superset is harmless; so is junk)."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    holders: list[object] = []
    for path in sorted(folder.glob(f"{CONTEXTS_DIR}/**/*.y*ml")):
        holders.append(_parsed(path, loader))
    for path in sorted(folder.glob(f"{WORKFLOWS_DIR}/*.y*ml")):
        data = _parsed(path, loader)
        steps = data.get("steps") if isinstance(data, dict) else None
        holders.extend(steps if isinstance(steps, list) else [])
    found: set[str] = set()
    for holder in holders:
        files = holder.get("files") if isinstance(holder, dict) else None
        if isinstance(files, list):
            found.update(f.strip("/") for f in files if isinstance(f, str) and f and ".." not in f)
    return found


def _parsed(path: Path, loader: type) -> object:
    import yaml

    try:
        return yaml.load(path.read_bytes(), Loader=loader)
    except (yaml.YAMLError, OSError, ValueError):
        return None  # the real loader reports it, with its place
