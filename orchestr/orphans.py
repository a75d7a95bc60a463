"""No orphans: a run's process groups are kept in a ledger file in its work folder, watched by a
tiny watchdog process, and swept by the next run of the workflow (or a resume).

- The ledger (`.orchestr/runs/RUN/processes`) lists the live step process groups, each with its
  leader's start time, rewritten atomically on every change.
- The watchdog (`sh`, in its own session) reads a pipe whose only write end is the runner's: when
  the runner dies, even by `kill -9`, the pipe closes, and the watchdog TERMs then KILLs every group
  the ledger still lists. On a clean end the ledger is emptied first, so it finds nothing to kill.
- `sweep_leftovers`, called once a run holds its workflow's lock (so no other run of that workflow
  is alive), stops what any earlier run's ledger still lists, when the watchdog could not (it was
  killed too, or the machine rebooted), checking the start time so a reused pid is never hit.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

LEDGER_NAME = "processes"
WATCHDOG_GRACE_SECONDS = 2
_WATCHDOG = (  # the ledger is read once, at the runner's death: a resumed run may rewrite it at once
    'cat >/dev/null; groups=$(grep -E "^[0-9]+ " "$1" 2>/dev/null | cut -d" " -f1); [ -n "$groups" ] || exit 0\n'
    'for g in $groups; do kill -TERM "-$g" 2>/dev/null; done\n'
    f'sleep {WATCHDOG_GRACE_SECONDS}\n'
    'for g in $groups; do kill -KILL "-$g" 2>/dev/null; done\n'
)


def start_time(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux /proc), or "0" where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "0"
    return stat.rpartition(")")[2].split()[19]


class Ledger:
    """The run's live process groups on disk, and the watchdog that stops them if the runner dies."""

    def __init__(self, path: Path, *, workflow: str) -> None:
        self.path = path
        self.workflow = workflow
        self._groups: dict[int, str] = {}
        self._lock = threading.Lock()
        self._watchdog: subprocess.Popen[bytes] | None = None

    def add(self, pgid: int) -> None:
        with self._lock:
            self._groups[pgid] = start_time(pgid)
            self._write()
            if self._watchdog is None:
                self._watchdog = _start_watchdog(self.path)

    def discard(self, pgid: int) -> None:
        with self._lock:
            if self._groups.pop(pgid, None) is not None:
                self._write()

    def close(self) -> None:
        """A clean end: the ledger goes, then the watchdog is let go with nothing to kill."""
        with self._lock:
            self._groups.clear()
            with contextlib.suppress(OSError):
                self.path.unlink()
            watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None and watchdog.stdin is not None:
            watchdog.stdin.close()
            with contextlib.suppress(subprocess.TimeoutExpired):
                watchdog.wait(timeout=5)

    def _write(self) -> None:
        lines = [f"# workflow={self.workflow} runner={os.getpid()}"]
        lines += [f"{pgid} {started}" for pgid, started in self._groups.items()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)


def _start_watchdog(ledger: Path) -> subprocess.Popen[bytes] | None:
    try:
        return subprocess.Popen(["sh", "-c", _WATCHDOG, "orchestr-watchdog", str(ledger)], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    except OSError:
        return None  # no sh: the next run's sweep still stops what is left


def _read(path: Path) -> tuple[str | None, int | None, list[tuple[int, str]]]:
    """The ledger's workflow, runner pid and (pgid, start time) entries."""
    workflow: str | None = None
    runner: int | None = None
    entries: list[tuple[int, str]] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("#"):
            fields = dict(part.partition("=")[::2] for part in line[1:].split())
            workflow = fields.get("workflow")
            runner = int(fields["runner"]) if fields.get("runner", "").isdigit() else None
            continue
        pgid, _, started = line.partition(" ")
        if pgid.isdigit() and int(pgid) > 1:
            entries.append((int(pgid), started.strip() or "0"))
    return workflow, runner, entries


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _same_group(pgid: int, started: str) -> bool:
    """Is `pgid` still the group the ledger recorded? A live leader with another start time is a reused pid."""
    now = start_time(pgid)
    if now == "0" or started == "0":
        return True  # the leader is gone (its pid cannot be reused while its group lives) or unknown here
    return now == started


def sweep_leftovers(runs_dir: Path, workflow: str, *, say: Callable[[str], None],
                    kill: Callable[[int], None]) -> int:
    """Stop every process group that dead runs of `workflow` left behind; the number of groups stopped."""
    stopped = 0
    for path in sorted(runs_dir.glob(f"*/{LEDGER_NAME}")):
        try:
            owner, runner, entries = _read(path)
        except OSError:
            continue
        if owner != workflow or (runner is not None and runner != os.getpid() and _alive(runner)):
            continue
        live = [pgid for pgid, started in entries if _group_exists(pgid) and _same_group(pgid, started)]
        for pgid in live:
            kill(pgid)
        if live:
            stopped += len(live)
            say(f"stopped {len(live)} process group(s) left by run {path.parent.name}, which ended without "
                f"finishing (pgid {', '.join(map(str, live))})")
        with contextlib.suppress(OSError):
            path.unlink()
    return stopped


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True

