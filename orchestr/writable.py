"""Output paths checked before a run starts: a run that cannot write its report fails at once,
with the option and the reason, instead of after the work (or with a traceback)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from orchestr.errors import StateError, UsageError


def _probe(folder: Path) -> None:
    """Create and remove a file in `folder`: the only test that the OS (and not just the mode) allows it."""
    fd, name = tempfile.mkstemp(dir=folder, prefix=".orchestr-probe.")
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(name)


def check_output_file(option: str, path: Path) -> None:
    """`--events`, `--junit`, `--record`: a file orchestr can create or replace, in a folder it can make."""
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file path such as {path / 'report.xml'}")
    if path.exists() and not path.is_file():
        raise UsageError(f"{option} {path}: is not a regular file")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _probe(path.parent)
    except OSError as exc:
        raise UsageError(f"{option} {path}: cannot write there ({exc.strerror or exc}); "
                         "choose a path in a folder you can write") from None


def check_folder(what: str, folder: Path) -> None:
    """A folder of the state dir orchestr must write into (the runs' work folders): a StateError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        _probe(folder)
    except OSError as exc:
        raise StateError(f"{what} {folder} is not writable ({exc.strerror or exc}): "
                         "fix its permissions or set state_dir in orchestr.yaml") from None
