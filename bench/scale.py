"""Scale rows at 100 / 1,000 / 5,000: `context tree`, `validate` of a chain, engine bookkeeping per step."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SIZES = (100, 1000, 5000)
Row = tuple[str, str, str]
# Runs argv and prints the child's wall seconds and peak RSS (KiB): the bench's own RSS is not mixed in.
MEASURE = ("import resource, subprocess, sys, time\n"
           "began = time.perf_counter()\n"
           "done = subprocess.run(sys.argv[2:], cwd=sys.argv[1], capture_output=True)\n"
           "assert done.returncode == 0, done.stderr.decode()[-500:]\n"
           "used = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
           "print(time.perf_counter() - began, used.ru_utime + used.ru_stime, used.ru_maxrss)")


def measure(argv: list[str], cwd: Path, repeat: int = 3) -> tuple[float, float, float]:
    """Best wall seconds, best CPU seconds (what a loaded machine does not inflate) and peak MiB."""
    samples = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", MEASURE, str(cwd), *argv], capture_output=True, text=True, check=True)
        wall, cpu, kib = out.stdout.split()
        samples.append((float(wall), float(cpu), int(kib) / 1024))
    return min(s[0] for s in samples), min(s[1] for s in samples), max(s[2] for s in samples)


def _ratio_note(values: list[float]) -> str:
    """The cost of each unit added from 1,000 to 5,000 against that from 100 to 1,000 (1x: linear;
    a quadratic would be ~6x), so fixed start-up does not flatter the figure."""
    (a, b, c), (na, nb, nc) = values, SIZES
    early, late = (b - a) / (nb - na), (c - b) / (nc - nb)
    return f"{late / early:.2f}x per added unit ({late * 1e6:.0f} us vs {early * 1e6:.0f} us)"


def scale_rows(orchestr: list[str], write_tree: Callable[[Path, int], None],
               write_chain: Callable[[Path, str, int], None]) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        trees, chains = [], []
        for n in SIZES:
            write_tree(Path(tmp) / f"tree{n}", n)
            write_chain(Path(tmp) / f"chain{n}", "chain", n)
            trees.append(measure([*orchestr, "context", "tree"], Path(tmp) / f"tree{n}"))
            chains.append(measure([*orchestr, "validate"], Path(tmp) / f"chain{n}"))
        for n, (wall, cpu, _) in zip(SIZES, trees, strict=True):
            rows.append((f"context tree, {n:,} nodes", f"{wall * 1000:.0f} ms (CPU {cpu * 1000:.0f} ms)",
                         "< 1 s at 5,000 (was 32.7 s)" if n == SIZES[-1] else ""))
        rows.append(("context tree: growth (CPU)", _ratio_note([s[1] for s in trees]), "linear (~1x; quadratic ~6x)"))
        for n, (wall, cpu, mib) in zip(SIZES, chains, strict=True):
            goal = "< 1 s and < 100 MiB at 5,000 (was 13.8 s, 637 MiB)" if n == SIZES[-1] else ""
            rows.append((f"validate a {n:,}-step chain", f"{wall * 1000:.0f} ms (CPU {cpu * 1000:.0f} ms), {mib:.0f} MiB", goal))
        rows.append(("validate chain: growth (CPU)", _ratio_note([s[1] for s in chains]), "linear (~1x; quadratic ~6x)"))
        rows += engine_rows(Path(tmp), write_chain)
    return rows


def engine_rows(tmp: Path, write_chain: Callable[[Path, str, int], None]) -> list[Row]:
    """The engine's own bookkeeping per step: a no-op runner and a recorder that keeps nothing."""
    from orchestr.compiler import compile_workflow
    from orchestr.engine import Engine, EngineConfig
    from orchestr.events import EventBus, Redactor
    from orchestr.project import Project
    from orchestr.steps.base import ActionResult, Attempt

    class NoopRunner:
        def run(self, attempt: Attempt) -> ActionResult:
            return ActionResult("ok", exit_code=0)

    class NullRecorder:
        def heartbeat(self, run_id: str) -> None: ...
        def save_step(self, *args: object, **kwargs: object) -> None: ...
        def save_attempt(self, *args: object, **kwargs: object) -> None: ...

    rows: list[Row] = []
    per_step = []
    for n in SIZES:
        root = tmp / f"engine{n}"
        write_chain(root, "chain", n)
        project = Project(root)
        plan = compile_workflow(project.find_workflow("chain"), project.tree, project.config)
        bus = EventBus(run="bench", workflow="chain", redactor=Redactor([]), sinks=[], log_sinks=[])
        engine = Engine(plan, config=EngineConfig(run_id="bench", root=root, work_dir=root / "work"), bus=bus,
                        recorder=NullRecorder(), runners={"shell": NoopRunner()})
        began = time.perf_counter()
        engine.run({})
        per_step.append((time.perf_counter() - began) / n)
        rows.append((f"engine bookkeeping, {n:,}-step chain (no-op runner)", f"{per_step[-1] * 1000:.3f} ms/step",
                     "flat in the number of steps (was 0.16 -> 2.49 ms)" if n == SIZES[-1] else ""))
    rows.append(("engine bookkeeping: growth", f"{per_step[-1] / per_step[0]:.2f}x per step at {SIZES[-1]:,} vs {SIZES[0]:,}",
                 "flat (~1x)"))
    return rows
