"""Benchmarks for review (python bench/review.py): `impact` and `lock --check` beside `validate`.

On the example project and on a generated one (50 workflows of 5 agent steps and a shell step,
a 500-node context tree), each in a fresh git repository with one commit and a rule added to the
root context since (so `impact` has every agent step to report). Goal: under 1 s, and within 3x of
`validate` on the same project. Each figure is the median of several runs of the real CLI.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from run import ORCHESTR, ROOT, timed, write_tree

RUNS = 5
GOAL_SECONDS = 1.0
GOAL_RATIO = 3.0


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", "-c",
                    "commit.gpgsign=false", *args], cwd=root, check=True, capture_output=True)


def cli(root: Path, *args: str, ok: tuple[int, ...] = (0,)) -> None:
    done = subprocess.run([*ORCHESTR, *args], cwd=root, capture_output=True)
    if done.returncode not in ok:
        raise SystemExit(f"orchestr {' '.join(args)} exited {done.returncode}: {done.stderr.decode()[-500:]}")


def write_workflows(root: Path, count: int) -> None:
    leaves = sorted(p.relative_to(root / "contexts").with_suffix("").as_posix()
                    for p in (root / "contexts").rglob("t*.yaml"))
    (root / "workflows").mkdir(exist_ok=True)
    for i in range(count):
        lines = [f"name: w{i}", "agents:"]
        for j in range(5):
            leaf = leaves[(i * 5 + j) % len(leaves)]
            lines += [f"  a{j}:", "    model: anthropic:claude-sonnet-4-6", f"    context: {leaf}",
                      "    instructions: You do one thing well.", "    tools: [read_file, write_file]"]
        lines += ["steps:", "  - id: prepare", "    run: 'true'"]
        for j in range(5):
            lines += [f"  - id: s{j}", "    needs: [prepare]", f"    agent: a{j}", f"    prompt: Do task {j} of {i}.",
                      f"    verify: [ {{ file_exists: out/w{i}/s{j}.txt }} ]"]
        (root / "workflows" / f"w{i}.yaml").write_text("\n".join(lines) + "\n")


def generated(root: Path) -> Path:
    write_tree(root, 500)
    (root / "contexts" / "org.yaml").write_text(
        "title: Org\nrules: [be kind]\npermissions: { tools: [read_file, write_file], write: [\"out/**\"] }\n")
    write_workflows(root, 50)
    return root


def example(root: Path) -> Path:
    from tests.demo_recording import copy_example

    return copy_example(root)


def add_rule(path: Path) -> None:
    text = path.read_text()
    if "rules:\n" in text:
        text = text.replace("rules:\n", "rules:\n  - \"A rule added in review.\"\n", 1)
    else:
        text = text.replace("rules: [", "rules: [\"A rule added in review.\", ", 1)
    path.write_text(text)


def measure(name: str, root: Path, root_context: str, rows: list[tuple[str, str, str]]) -> None:
    git(root, "init", "-q", "-b", "main")
    cli(root, "lock")
    git(root, "add", ".")
    git(root, "commit", "-qm", "base")
    validate = timed(lambda: cli(root, "validate"), repeat=RUNS)
    check = timed(lambda: cli(root, "lock", "--check"), repeat=RUNS)
    add_rule(root / "contexts" / f"{root_context}.yaml")
    impact = timed(lambda: cli(root, "impact", "--base", "main", "--format", "markdown"), repeat=RUNS)
    stale = timed(lambda: cli(root, "lock", "--check", ok=(1,)), repeat=RUNS)
    rows.append((f"{name}: validate", f"{validate * 1000:.0f} ms", "(the reference)"))
    for what, seconds in (("impact --base main (root rule added)", impact), ("lock --check (fresh)", check),
                          ("lock --check (stale: every agent step)", stale)):
        verdict = "ok" if seconds < GOAL_SECONDS and seconds <= GOAL_RATIO * validate else "MISSED"
        rows.append((f"{name}: {what}", f"{seconds * 1000:.0f} ms",
                     f"{seconds / validate:.2f}x validate; goal < 1 s and <= 3x: {verdict}"))


def main() -> None:
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        measure("example project", example(Path(tmp) / "acme"), "acme", rows)
    with tempfile.TemporaryDirectory() as tmp:
        measure("50 workflows, 500-node tree", generated(Path(tmp)), "org", rows)
    from table import print_table

    print_table("orchestr review benchmarks", rows)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(ROOT))
    main()
