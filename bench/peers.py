"""The same 500 shell steps run by orchestr, go-task and doit, net of the `bash -c true` spawn floor.

Each tool runs `bash -c true` 500 times, as a chain (each needs the one before) and as a fan-out
(no needs, run in parallel). A peer whose package is not installed is skipped with the reason.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

STEPS = 500
Row = tuple[str, str, str]


def spawn_floor(repeat: int = STEPS) -> float:
    """Seconds per `bash -c true` started from Python and waited for, one after the other."""
    began = time.perf_counter()
    for _ in range(repeat):
        subprocess.run(["bash", "-c", "true"], check=True)
    return (time.perf_counter() - began) / repeat


def write_taskfile(root: Path) -> None:
    lines = ["version: '3'", "tasks:"]
    for i in range(STEPS):
        lines += [f"  s{i}:", "    cmds: [bash -c true]"]
        if i:
            lines.append(f"    deps: [s{i - 1}]")
    lines += ["  wide:", "    deps: [" + ", ".join(f"w{i}" for i in range(STEPS)) + "]"]
    for i in range(STEPS):
        lines += [f"  w{i}:", "    cmds: [bash -c true]"]
    (root / "Taskfile.yml").write_text("\n".join(lines) + "\n")


DODO = '''
STEPS = {steps}


def task_s():
    for i in range(STEPS):
        yield {{"name": str(i), "actions": [["bash", "-c", "true"]], "uptodate": [False],
               "task_dep": [f"s:{{i - 1}}"] if i else [], "verbosity": 0}}


def task_w():
    for i in range(STEPS):
        yield {{"name": str(i), "actions": [["bash", "-c", "true"]], "uptodate": [False], "verbosity": 0}}
'''


def _peer_commands(root: Path) -> dict[str, tuple[list[str], list[str]] | str]:
    """Per peer: (chain argv, fan-out argv), or why it is skipped."""
    bin_dir = Path(sys.executable).parent
    found: dict[str, tuple[list[str], list[str]] | str] = {}
    task = shutil.which("task", path=str(bin_dir))
    if task:
        write_taskfile(root)
        found["go-task"] = ([task, "--silent", f"s{STEPS - 1}"], [task, "--silent", "wide"])
    else:
        found["go-task"] = "skipped: `task` not installed (pip install go-task-bin, in the dev extra)"
    doit = shutil.which("doit", path=str(bin_dir))
    if doit:
        (root / "dodo.py").write_text(DODO.format(steps=STEPS))
        base = [doit, "run", "--db-file", str(root / ".doit.db")]
        found["doit"] = ([*base, f"s:{STEPS - 1}"], [*base, "-n", "8", "-P", "thread", "w"])
    else:
        found["doit"] = "skipped: `doit` not installed (pip install doit, in the dev extra)"
    return found


def _once(argv: list[str], cwd: Path) -> float:
    began = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return time.perf_counter() - began


def peer_rows(root: Path, orchestr: Callable[[str], float], floor: float) -> list[Row]:
    """`orchestr(workflow)` runs that 500-step workflow and returns its seconds minus start-up."""
    rows: list[Row] = []
    per_step = {"chain": orchestr("chain"), "fan-out": orchestr("wide")}
    goal = "<= 1 ms/step net of the spawn floor"
    for shape, seconds in per_step.items():
        rows.append((f"orchestr: 500-step {shape}, net of spawn", _net(seconds, floor), goal))
    for peer, commands in _peer_commands(root).items():
        if isinstance(commands, str):
            rows.append((f"{peer}: same 500 steps", commands, "peer"))
            continue
        empty = _once([*commands[0][:1], "--version"], root)  # the tool's own start-up
        for shape, argv in zip(("chain", "fan-out"), commands, strict=True):
            rows.append((f"{peer}: 500-step {shape}, net of spawn", _net(_once(argv, root) - empty, floor), "peer"))
    return rows


def _net(seconds: float, floor: float) -> str:
    per_step = seconds / STEPS
    return f"{(per_step - floor) * 1000:.2f} ms/step (total {per_step * 1000:.2f}, floor {floor * 1000:.2f})"
