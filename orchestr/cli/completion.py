"""Shell completion: `orchestr completion bash|zsh|fish`, and the values completed.

Completion runs on every Tab press, so its callbacks read the project cheaply: workflow names from
file stems and a top-level `name:` line (no YAML models, no compiler), run ids straight from the
store when it exists (never creating it). No provider SDK is imported on this path.
"""

from __future__ import annotations

import re
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from orchestr.cli.common import STATE

_NAME_LINE = re.compile(r"""^name:\s*["']?([A-Za-z0-9_][A-Za-z0-9_.-]*)["']?\s*(?:#.*)?$""", re.MULTILINE)
RUNS_COMPLETED = 50


class Shell(StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def register(app: typer.Typer) -> None:
    app.command("completion")(completion)


def completion(
    shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish.", metavar="SHELL")],
) -> None:
    """Print the shell completion script: add `eval "$(orchestr completion bash)"` to ~/.bashrc
    (zsh: `eval "$(orchestr completion zsh)"` in ~/.zshrc; fish: `orchestr completion fish | source`
    in ~/.config/fish/config.fish). `orchestr --install-completion` does that for the current shell."""
    from typer._completion_classes import completion_init
    from typer._completion_shared import get_completion_script

    completion_init()
    typer.echo(get_completion_script(prog_name="orchestr", complete_var="_ORCHESTR_COMPLETE", shell=shell.value))


def _root(ctx: typer.Context | None) -> Path:
    from orchestr.project import find_root

    given = ctx.find_root().params.get("project") if ctx is not None else None
    start = Path(given) if given else STATE.project_dir or Path.cwd()
    return find_root(start)


def workflow_names(root: Path) -> list[str]:
    """Each workflow's `name:` (or its file's stem), read without decoding the file."""
    folder = root / "workflows"
    names: list[str] = []
    for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]) if folder.is_dir() else []:
        try:
            found = _NAME_LINE.search(path.read_text(errors="replace"))
        except OSError:
            continue
        names.append(found.group(1) if found else path.stem)
    return sorted(set(names))


def complete_workflow(ctx: typer.Context, incomplete: str) -> list[str]:
    return [name for name in workflow_names(_root(ctx)) if name.startswith(incomplete)]


def run_ids(root: Path) -> list[str]:
    """Recent run ids, newest first, from an existing store (completion never creates one)."""
    import sqlite3

    from orchestr.project import CONFIG_FILE

    state_dir = ".orchestr"
    config = root / CONFIG_FILE
    if config.is_file():
        match = re.search(r"""^state_dir:\s*["']?([^"'#\n]+?)["']?\s*(?:#.*)?$""", config.read_text(errors="replace"),
                          re.MULTILINE)
        state_dir = match.group(1) if match else state_dir
    db = root / state_dir / "state.db"
    if not db.is_file():
        return []
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0) as conn:
            rows = conn.execute("SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT ?",
                                (RUNS_COMPLETED,)).fetchall()
    except sqlite3.Error:
        return []
    return [str(row[0]) for row in rows]


def complete_run(ctx: typer.Context, incomplete: str) -> list[str]:
    return [run for run in ["last", *run_ids(_root(ctx))] if run.startswith(incomplete)]
