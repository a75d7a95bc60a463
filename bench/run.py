"""Benchmarks (make bench): start-up, validate, compile, engine overhead against go-task and doit,
scale rows at 100 / 1,000 / 5,000, parallel speed-up, tick.

Prints one table, each figure beside its goal (issue 12). Each command is timed over several runs (median), beside the floor of
`python -c "import typer, pydantic, yaml, rich"` that any CLI on this stack pays.
"""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
PY = sys.executable
ORCHESTR = [PY, "-m", "orchestr"]
REPEAT = 5


def timed(fn: Callable[[], object], repeat: int = REPEAT) -> float:
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - began)
    return statistics.median(samples)


def command(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Callable[[], object]:
    def run() -> None:
        done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True)
        if done.returncode not in (0, 3):
            raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()[-500:]}")
    return run


def write_chain(root: Path, name: str, n: int, *, fan_out: bool = False, sleep: str = "", condition: str = "") -> None:
    (root / "workflows").mkdir(parents=True, exist_ok=True)
    lines = [f"name: {name}", "steps:"]
    for i in range(n):
        lines.append(f"  - id: s{i}")
        lines.append(f"    run: '{sleep or 'true'}'")
        if i and not fan_out:
            lines.append(f"    needs: [s{i - 1}]")
        if i and condition:
            lines.append(f"    if: {condition}")
    (root / "workflows" / f"{name}.yaml").write_text("\n".join(lines) + "\n")


def write_tree(root: Path, nodes: int) -> None:
    base = root / "contexts"
    (base / "org").mkdir(parents=True, exist_ok=True)
    (base / "org.yaml").write_text("title: Org\nrules: [be kind]\n")
    per = max(1, int(nodes ** 0.5))
    made = 1
    for i in range(per):
        (base / "org" / f"d{i}").mkdir(exist_ok=True)
        (base / "org" / f"d{i}.yaml").write_text(f"title: D{i}\nvars: {{n: {i}}}\n")
        made += 1
        for j in range(per):
            if made >= nodes:
                return
            (base / "org" / f"d{i}" / f"t{j}.yaml").write_text(f"title: T{j}\nrules: [rule {j}]\n")
            made += 1


def bench_compile(rows: list[tuple[str, str, str]]) -> None:
    from orchestr.compiler import compile_workflow
    from orchestr.project import Project

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_chain(root, "big", 1000)
        write_tree(root, 5000)
        project = Project(root)
        workflow = project.load_workflow(root / "workflows" / "big.yaml")
        seconds = timed(lambda: compile_workflow(workflow, project.tree, project.config))
        rows.append(("compile a 1,000-step workflow", f"{seconds * 1000:.0f} ms", "< 500 ms"))
        load = timed(lambda: Project(root).tree, repeat=3)
        rows.append(("load a 5,000-node context tree", f"{load * 1000:.0f} ms", "< 1 s"))


def bench_engine(rows: list[tuple[str, str, str]]) -> None:
    from peers import peer_rows, spawn_floor

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_chain(root, "chain", 500)
        write_chain(root, "wide", 500, fan_out=True)
        write_chain(root, "handlers", 500, condition="${{ always() && steps.s0.status == 'succeeded' }}")
        write_chain(root, "one", 1)
        write_chain(root, "sleepy", 8, fan_out=True, sleep="sleep 0.5")
        base = timed(command([*ORCHESTR, "run", "one", "-q"], root), repeat=3)
        floor = spawn_floor()
        rows.append(("spawn floor: `bash -c true` from Python", f"{floor * 1000:.2f} ms", ""))
        rows += peer_rows(root, lambda name: timed(command([*ORCHESTR, "run", name, "-q"], root), repeat=1) - base, floor)
        total = timed(command([*ORCHESTR, "run", "handlers", "-q"], root), repeat=1)
        rows.append(("engine: 500-step chain, each step `if: always() && ...`",
                     f"{(total - base) / 500 * 1000:.2f} ms/step", "< 5 ms/step (incl. bash start-up)"))
        wall = timed(command([*ORCHESTR, "run", "sleepy", "-q"], root), repeat=1) - base
        rows.append(("8 branches of sleep 0.5: wall / critical path", f"{wall / 0.5:.2f}x", "<= 1.1x"))


def write_agents(root: Path, name: str, n: int, *, max_turns: int = 5) -> None:
    (root / "workflows").mkdir(parents=True, exist_ok=True)
    (root / "note.txt").write_text("hello\n")
    lines = [f"name: {name}", "agents:", "  a:", "    model: anthropic:claude-sonnet-4-6",
             "    tools: [read_file]", f"    max_turns: {max_turns}", "steps:"]
    for i in range(n):
        lines += [f"  - id: s{i}", "    agent: a", f"    prompt: Say done ({i})."]
    (root / "workflows" / f"{name}.yaml").write_text("\n".join(lines) + "\n")


def bench_agents(rows: list[tuple[str, str, str]]) -> None:
    """Agent steps through the official SDK against the local wire-protocol server."""
    from tests.fakeapi import FakeLLMServer, Reply, ToolCall

    with tempfile.TemporaryDirectory() as tmp, FakeLLMServer() as server:
        root = Path(tmp)
        write_agents(root, "one", 1)
        write_agents(root, "eight", 8)
        write_agents(root, "turns", 1, max_turns=60)
        env = {**os.environ, **server.env()}
        server.anthropic.responder = lambda request: Reply.text("done")
        server.latency = 0.5
        one = timed(command([*ORCHESTR, "run", "one", "-q"], root, env), repeat=3)
        eight = timed(command([*ORCHESTR, "run", "eight", "-q"], root, env), repeat=3)
        rows.append(("8 independent agent steps, 500 ms replies: wall / one step", f"{eight / one:.2f}x", "<= 1.2x"))
        server.latency = 0.0
        base = timed(command([*ORCHESTR, "run", "one", "-q"], root, env), repeat=3)
        calls = itertools.count()
        server.anthropic.responder = lambda request: (
            Reply.tool_calls(ToolCall("read_file", {"path": "note.txt"})) if next(calls) % 50 < 49 else Reply.text("done"))
        many = timed(command([*ORCHESTR, "run", "turns", "-q"], root, env), repeat=3)
        per_call = (many - base) / 49 * 1000
        rows.append(("overhead per model call (+ a read_file), server at 0 ms", f"{per_call:.1f} ms", "SDK + HTTP + loop"))


def bench_cli(rows: list[tuple[str, str, str]]) -> None:
    floor = timed(command([PY, "-c", "import typer, pydantic, yaml, rich"], ROOT))
    rows.append(("floor: import typer, pydantic, yaml, rich", f"{floor * 1000:.0f} ms", ""))
    # `import pydantic` is lazy: the first model class pays the rest. This row shows that floor.
    loaded = timed(command([PY, "-c", "import typer, yaml, rich.console, jinja2; from pydantic import BaseModel\n"
                                      "class M(BaseModel):\n    x: int = 0"], ROOT))
    rows.append(("floor with pydantic, rich.console, jinja2 loaded", f"{loaded * 1000:.0f} ms ({loaded / floor:.2f}x floor)", ""))
    helped = timed(command([*ORCHESTR, "--help"], ROOT))
    rows.append(("orchestr --help", f"{helped * 1000:.0f} ms ({helped / floor:.2f}x floor)", ""))
    validate = timed(command([*ORCHESTR, "validate"], ROOT))
    rows.append(("orchestr validate (examples)",
                 f"{validate * 1000:.0f} ms ({validate / floor:.2f}x floor, {validate / loaded:.2f}x loaded floor)",
                 "<= 1.5x floor (was 3.1x)"))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "workflows").mkdir()
        for i in range(200):
            (root / "workflows" / f"w{i}.yaml").write_text(
                f"name: w{i}\nschedule: {{cron: '0 3 * * *', timezone: Europe/Berlin}}\nsteps:\n  - id: a\n    run: 'true'\n")
        idle = timed(command([*ORCHESTR, "tick", "--now", "2026-01-01T12:00:00Z"], root))
        rows.append(("idle tick over 200 scheduled workflows",
                     f"{idle * 1000:.0f} ms ({idle / floor:.2f}x floor, {idle / loaded:.2f}x loaded floor)",
                     "<= 2x floor (was 3.0x)"))


def bench_scale(rows: list[tuple[str, str, str]]) -> None:
    from scale import scale_rows

    rows += scale_rows(ORCHESTR, write_tree, lambda root, name, n: write_chain(root, name, n))


def main() -> None:
    rows: list[tuple[str, str, str]] = []
    for section in (bench_cli, bench_compile, bench_engine, bench_scale, bench_agents):
        section(rows)
    from rich.console import Console
    from rich.table import Table

    table = Table(title="orchestr benchmarks", title_justify="left")
    for column in ("what", "measured", "goal"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)


if __name__ == "__main__":
    main()
