"""Benchmark: what the bubblewrap sandbox costs an MCP server (python bench/sandbox.py).

The same stdio server (tests/mcp_servers/fs_server.py) is started and called through orchestr's
hub twice: with no reach (unconfined) and with a reach (inside bwrap). Start = first `tools()`
(process start, MCP initialise, list tools), median of several fresh starts; call = one tool call
on a started server, median of many. Goals: start < 50 ms more, call < 2 ms more.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from orchestr.models import McpServerSpec, Reach  # noqa: E402
from orchestr.tools.mcp import McpHub  # noqa: E402
from orchestr.tools.sandbox import find_sandbox  # noqa: E402

SERVER = str(ROOT / "tests" / "mcp_servers" / "fs_server.py")
STARTS = 9
CALLS = 300


def _spec(*, sandboxed: bool) -> McpServerSpec:
    reach = Reach(write=["out/**"]) if sandboxed else None
    return McpServerSpec(command=sys.executable, args=(SERVER,), reach=reach)


def start_seconds(root: Path) -> tuple[float, float]:
    """Unconfined and sandboxed starts, interleaved so that the machine's load falls on both alike."""
    samples: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(STARTS):
        for sandboxed in (False, True):
            hub = McpHub({"fs": _spec(sandboxed=sandboxed)}, root)
            began = time.perf_counter()
            hub.tools("fs")
            samples[sandboxed].append(time.perf_counter() - began)
            hub.close()
    return statistics.median(samples[False]), statistics.median(samples[True])


def call_seconds(root: Path) -> tuple[float, float]:
    hubs = {sandboxed: McpHub({"fs": _spec(sandboxed=sandboxed)}, root) for sandboxed in (False, True)}
    samples: dict[bool, list[float]] = {False: [], True: []}
    try:
        for hub in hubs.values():
            hub.tools("fs")
        for i in range(CALLS):
            for sandboxed, hub in hubs.items():
                began = time.perf_counter()
                result = hub.call("fs.write_file", {"path": f"out/{i % 10}.txt", "content": "x"}, timeout=30)
                samples[sandboxed].append(time.perf_counter() - began)
                assert result.content.startswith("ok"), result.content
        return statistics.median(samples[False]), statistics.median(samples[True])
    finally:
        for hub in hubs.values():
            hub.close()


def spawn_seconds(root: Path, bwrap: str) -> tuple[float, float]:
    """The sandbox's own cost, without the server: `true` against `true` inside the same bwrap."""
    from orchestr.governance import Governance
    from orchestr.reach import server_reach
    from orchestr.tools.sandbox import Sandbox, sandboxed_argv

    reach = server_reach("fs", _spec(sandboxed=True))
    boxed = sandboxed_argv(Sandbox(bwrap), ["/bin/true"], root=root, reach=reach, governance=Governance.for_state_dir())
    samples: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(STARTS * 5):
        for sandboxed, argv in ((False, ["/bin/true"]), (True, boxed)):
            began = time.perf_counter()
            subprocess.run(argv, check=True)
            samples[sandboxed].append(time.perf_counter() - began)
    return statistics.median(samples[False]), statistics.median(samples[True])


def main() -> None:
    sandbox = find_sandbox(os.environ)
    if isinstance(sandbox, str):
        raise SystemExit(f"no sandbox here: {sandbox}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "contexts").mkdir()
        start_sandboxed(root)  # warm the OS caches before measuring
        rows = [("spawn only", *spawn_seconds(root, sandbox.bwrap), 0.050),
                ("start", *start_seconds(root), 0.050),
                ("one call", *call_seconds(root), 0.002)]
    print(f"{'':10} {'unconfined':>12} {'sandboxed':>12} {'difference':>12}  goal")
    for what, plain, boxed, goal in rows:
        extra = boxed - plain
        verdict = "ok" if extra < goal else "MISSED"
        print(f"{what:10} {plain * 1000:10.2f}ms {boxed * 1000:10.2f}ms {extra * 1000:+10.2f}ms  "
              f"< {goal * 1000:g} ms more: {verdict}")


def start_sandboxed(root: Path) -> None:
    hub = McpHub({"fs": _spec(sandboxed=True)}, root)
    hub.tools("fs")
    hub.close()


if __name__ == "__main__":
    main()
