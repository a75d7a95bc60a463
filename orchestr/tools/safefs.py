"""Race-free file access below a root: every path is opened relative to a directory file
descriptor, one component at a time with O_NOFOLLOW, so a symlink swapped in between a check and
the use (TOCTOU) can never lead outside; the opened file is checked with fstat (a regular file of
bounded size: a FIFO or a device is refused, never waited on); writes go through a temp file made
in the final folder, removed on every error path.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class Refused(Exception):
    """The path cannot be used as asked; the message is for the model."""


def parts_of(relative: str) -> list[str]:
    """The components of a checked project-relative path ('.' is the root itself)."""
    return [p for p in relative.split("/") if p not in ("", ".")]


def _why(exc: OSError, shown: str) -> Refused:
    if exc.errno in (errno.ELOOP, errno.EMLINK):
        return Refused(f"{shown} is a symlink: tools do not follow symlinks")
    if exc.errno == errno.ENOTDIR:
        return Refused(f"{shown}: a part of the path is not a folder (or is a symlink)")
    if exc.errno == errno.ENOENT:
        return Refused(f"{shown} does not exist")
    return Refused(f"{shown}: {exc.strerror or exc}")


@contextlib.contextmanager
def open_folder(root: Path, parts: Sequence[str], *, create: bool = False) -> Iterator[int]:
    """A descriptor of root/parts, walked without following any symlink (made on the way if `create`)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for index, part in enumerate(parts):
            shown = "/".join(parts[: index + 1])
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise Refused(f"{shown} does not exist") from None
                with contextlib.suppress(FileExistsError):  # made by someone else meanwhile
                    os.mkdir(part, 0o777, dir_fd=fd)
                try:
                    next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                except OSError as exc:
                    raise _why(exc, shown) from None
            except OSError as exc:
                raise _why(exc, shown) from None
            os.close(fd)
            fd = next_fd
        yield fd
    finally:
        os.close(fd)


def read_file(root: Path, relative: str, *, limit: int) -> tuple[bytes, bool]:
    """At most `limit` bytes of a regular file, and whether there was more."""
    parts = parts_of(relative)
    if not parts:
        raise Refused(". is a folder: use list_files")
    with open_folder(root, parts[:-1]) as folder:
        try:
            fd = os.open(parts[-1], _FILE_FLAGS, dir_fd=folder)
        except OSError as exc:
            raise _why(exc, relative) from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise Refused(f"{relative} is a folder: use list_files")
        if not stat.S_ISREG(info.st_mode):
            raise Refused(f"{relative} is not a regular file (a FIFO, socket or device is never read)")
        os.set_blocking(fd, True)
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    return data[:limit], len(data) > limit


def write_file(root: Path, relative: str, content: bytes) -> None:
    """Create or replace a regular file atomically; the temp file never survives an error."""
    parts = parts_of(relative)
    if not parts:
        raise Refused(". is the project folder: give a file path")
    with open_folder(root, parts[:-1], create=True) as folder:
        name = parts[-1]
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISDIR(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
                raise Refused(f"{relative} is a folder")
        tmp = f".{name}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=folder)
        try:
            try:
                view = memoryview(content)
                while view:
                    view = view[os.write(fd, view):]
            finally:
                os.close(fd)
            # A rename replaces a symlink itself, never what it points to.
            os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder)
            if isinstance(exc, IsADirectoryError):
                raise Refused(f"{relative} is a folder") from None
            raise


def list_folder(root: Path, relative: str) -> list[str]:
    """The names in a folder, folders marked with a trailing '/', symlinks never followed."""
    with open_folder(root, parts_of(relative)) as folder, os.scandir(folder) as entries:
        return sorted(e.name + ("/" if e.is_dir(follow_symlinks=False) else "") for e in entries)
