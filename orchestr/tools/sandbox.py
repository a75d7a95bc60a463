"""The sandbox a stdio MCP server with a declared reach runs in: bubblewrap (`bwrap`) on Linux.

What the server sees: the whole filesystem read-only; a private /tmp, /proc and /dev; the project
read-only, except the folders of its `write` reach (resolved first, so a symlink cannot point the
bind elsewhere), with the governance paths bound read-only again on top; no network unless its
reach lists `hosts` (the sandbox cannot filter by host: with `hosts` it shares the network); its own
PID namespace, a new session, and death with its parent, so the whole tree goes with the step.

Where no sandbox can be had (not Linux, no bwrap, or bwrap cannot create namespaces here), a server
whose reach is narrower than everything does not start: fail closed, unless orchestr.yaml says
`unsafe_no_sandbox: true` for it. ORCHESTR_BWRAP names the bwrap binary to use (default: PATH).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from orchestr.governance import Governance
from orchestr.permissions import EffectivePermissions
from orchestr.reach import ServerReach, dir_glob, write_dir

PROBE_TIMEOUT_SECONDS = 10.0


class SandboxRefused(Exception):
    """The server must not start: no sandbox, or its write reach resolves onto what it may not write."""


@dataclass(frozen=True)
class Sandbox:
    bwrap: str


def find_sandbox(environ: Mapping[str, str]) -> Sandbox | str:
    """The sandbox to use, or why there is none."""
    if not sys.platform.startswith("linux"):
        return f"the sandbox (bubblewrap) needs Linux; this is {sys.platform}"
    chosen = environ.get("ORCHESTR_BWRAP")
    path = shutil.which(chosen or "bwrap", path=None if chosen else environ.get("PATH"))
    if path is None:
        where = f"ORCHESTR_BWRAP={chosen}" if chosen else "bwrap on PATH"
        return f"no bubblewrap: {where} not found (install it: apt-get install bubblewrap)"
    problem = _probe(path)
    return Sandbox(path) if problem is None else f"{path} cannot create a sandbox here: {problem}"


@lru_cache(maxsize=8)
def _probe(bwrap: str) -> str | None:
    """None if bwrap can create the namespaces we use (containers often forbid them)."""
    argv = [bwrap, "--ro-bind", "/", "/", "--unshare-pid", "--unshare-net", "--die-with-parent", "true"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return None if done.returncode == 0 else (done.stderr.strip() or f"exit code {done.returncode}")


def _under_tmp(argv: Sequence[str]) -> list[Path]:
    """The top folders under /tmp that the command's own paths live in: the private /tmp would hide them."""
    tmp = Path("/tmp")
    found: list[Path] = []
    for part in [*argv, *_interpreter(argv[0] if argv else "")]:
        if not part.startswith("/"):
            continue
        for candidate in (Path(part), Path(part).resolve()):
            if candidate.is_relative_to(tmp) and candidate != tmp and candidate.exists():
                top = tmp / candidate.relative_to(tmp).parts[0]
                if top not in found:
                    found.append(top)
    return found


def _interpreter(command: str) -> list[str]:
    """A script's `#!` interpreter (it must be visible too)."""
    try:
        with open(command, "rb") as script:
            first = script.readline(256)
    except OSError:
        return []
    return first[2:].decode(errors="replace").split()[:1] if first.startswith(b"#!") else []


def sandboxed_argv(sandbox: Sandbox, argv: Sequence[str], *, root: Path, reach: ServerReach,
                   governance: Governance) -> list[str]:
    """`argv` run inside bwrap with `reach` enforced; SandboxRefused if a write folder escapes."""
    base = root.resolve()
    writable = writable_dirs(base, reach, governance)
    args = [sandbox.bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
            "--ro-bind", str(base), str(base)]  # the project again, in case it lives under /tmp
    for shown in _under_tmp(argv):  # a command or script under /tmp (a venv, a checkout) stays visible
        args += ["--ro-bind", str(shown), str(shown)]
    for folder in writable:
        args += ["--bind", str(folder), str(folder)]
    for protected in _governance_inside(base, writable, governance):
        args += ["--ro-bind", str(protected), str(protected)]
    args += ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--die-with-parent", "--new-session"]
    if not reach.hosts:
        args.append("--unshare-net")
    return [*args, "--chdir", str(base), "--", *argv]


def writable_dirs(base: Path, reach: ServerReach, governance: Governance) -> list[Path]:
    """The real folders of the write reach, created if missing; none may be or lie in a governance path.

    The project root itself is never bound writable, since a governance path that does not exist
    yet (orchestr.lock) could then be created: its entries other than the governance paths are.
    """
    guarded = [(path, (base / path).resolve()) for path in governance.paths]
    folders: list[Path] = []
    for pattern in _without_root(base, reach.write, governance):
        folder = (base / write_dir(pattern)).resolve()
        if folder != base and base not in folder.parents:
            raise SandboxRefused(f"its write reach '{pattern}' resolves outside the project, to {folder} "
                                 "(through a symlink)")
        for name, real in guarded:
            if folder == real or real in folder.parents:
                raise SandboxRefused(f"its write reach '{pattern}' resolves to {folder}, inside {name}, "
                                     "which no server may write")
        folder.mkdir(parents=True, exist_ok=True)
        folders.append(folder)
    return list(dict.fromkeys(folders))


def _without_root(base: Path, patterns: Sequence[str], governance: Governance) -> list[str]:
    result: list[str] = []
    for pattern in patterns:
        if write_dir(pattern):
            result.append(pattern)
        else:
            result += [f"{entry.name}/**" for entry in sorted(base.iterdir())
                       if entry.is_dir() and governance.protecting(entry.name) is None]
    return result


def permission_reach(permissions: EffectivePermissions) -> ServerReach:
    """A step's effective permissions as a sandbox reach, for run_command's children.

    Writable: the folders of the most specific `write` level that every level allows (a file-level
    entry such as `out/r.json` cannot be bound, so it is not writable in the sandbox); with `write`
    unset, every folder of the project but the governance paths. Network: when `hosts` allows any.
    """
    summary = permissions.summary()
    writes = summary["write"]
    folders = ["**"] if writes is None else [
        dir_glob(write_dir(p)) for p in writes if permissions.covers("write", dir_glob(write_dir(p))).allowed]
    hosts = tuple(summary["hosts"] or ()) if permissions.check_host_any() else ()
    return ServerReach("run_command", bounded=True, write=tuple(dict.fromkeys(folders)), hosts=hosts)


def _governance_inside(base: Path, writable: Sequence[Path], governance: Governance) -> list[Path]:
    """Existing governance paths under a writable folder: bound read-only again on top of it."""
    found = []
    for path in governance.paths:
        real = (base / path).resolve()
        if real.exists() and any(real == folder or folder in real.parents for folder in writable):
            found.append(real)
    return found
