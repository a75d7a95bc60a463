"""Complexity: 10x the size must cost about 10x, not 100x.

Counts of operations where a seam lets us count them (the tree's node mapping, the ready queue's
status reads); otherwise the best of a few in-process timings, with ratios generous enough for a
loaded 2-core machine (a quadratic costs ~100x at 10x the size; these allow 25x).
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from orchestr.compiler import compile_workflow
from orchestr.context import ContextNode, ContextTree, NodeId
from orchestr.plan import Plan, StepId
from orchestr.project import Project
from orchestr.readiness import ReadyQueue, UpstreamIndex
from orchestr.source import Document

LINEAR = 25.0  # allowed cost ratio for 10x the size


class CountingNodes(Mapping[NodeId, ContextNode]):
    """The tree's node mapping, counting every node it hands out."""

    def __init__(self, nodes: dict[NodeId, ContextNode]) -> None:
        self._nodes = nodes
        self.reads = 0

    def __getitem__(self, key: NodeId) -> ContextNode:
        self.reads += 1
        return self._nodes[key]

    def __iter__(self) -> Iterator[NodeId]:
        for key in self._nodes:
            self.reads += 1
            yield key

    def __len__(self) -> int:
        return len(self._nodes)


def _tree(n: int, root: Path) -> CountingNodes:
    from orchestr.models import ContextNodeSpec

    ids = ["org"] + [f"org/d{i}" for i in range(n // 10)]
    ids += [f"org/d{i % (n // 10)}/t{i}" for i in range(n - len(ids))]
    nodes = {NodeId(i): ContextNode(NodeId(i), ContextNodeSpec(title=i), Document(root / f"{i}.yaml", i, {}))
             for i in ids}
    return CountingNodes(nodes)


def _walk(tree: ContextTree, parent: NodeId | None = None) -> int:
    return sum(1 + _walk(tree, child.id) for child in tree.children(parent))


def test_walking_the_context_tree_reads_each_node_a_constant_number_of_times(tmp_path: Path) -> None:
    reads = []
    for n in (200, 2000):
        nodes = _tree(n, tmp_path)
        assert _walk(ContextTree(tmp_path, nodes)) == n
        reads.append(nodes.reads)
    assert reads[1] < 3 * 2000, reads  # a scan of every node for each node would be 4,000,000
    assert reads[1] / reads[0] < 11, reads


def test_context_tree_command_lists_children_sorted(project: object) -> None:
    from tests.conftest import ProjectDir

    assert isinstance(project, ProjectDir)
    project.write("contexts/org.yaml", "title: Org\n")
    for name in ("b", "a", "c"):
        project.write(f"contexts/org/{name}.yaml", f"title: {name.upper()}\n")
    project.write("contexts/org/a/x.yaml", "title: X\n")
    result = project.cli("context", "tree", "--format", "json")
    assert result.exit_code == 0, result.output
    import json

    (org,) = json.loads(result.stdout)
    assert [c["id"] for c in org["children"]] == ["org/a", "org/b", "org/c"]
    assert org["children"][0]["children"] == [{"id": "org/a/x", "title": "X", "children": []}]


def _write_chain(root: Path, name: str, n: int, *, reads_first: bool = False) -> Path:
    lines = [f"name: {name}", "steps:", "  - id: s0", "    run: 'true'"]
    for i in range(1, n):
        lines += [f"  - id: s{i}", f"    needs: [s{i - 1}]", "    run: 'true'"]
        if reads_first:
            lines.append("    if: ${{ steps.s0.status == 'succeeded' }}")
    path = root / "workflows" / f"{name}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def _best(fn: Callable[[], object], repeat: int = 3) -> float:
    samples = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - began)
    return min(samples)


def _compiler(root: Path, n: int) -> Callable[[], Plan]:
    project = Project(root)
    workflow = project.load_workflow(_write_chain(root, f"c{n}", n, reads_first=True))
    return lambda: compile_workflow(workflow, project.tree, project.config)


def test_compiling_a_chain_is_linear_in_time(tmp_path: Path) -> None:
    """Each step reads steps.s0 (the far end of the chain): the upstream check must not walk it."""
    small, large = _compiler(tmp_path, 300), _compiler(tmp_path, 3000)
    plan = large()
    assert list(plan.steps)[-1] == "s2999" and len(plan.layers) == 3000
    ratio = _best(large) / _best(small)
    assert ratio < LINEAR, f"3,000 steps cost {ratio:.1f}x 300 steps"


def test_compiling_a_chain_is_linear_in_memory(tmp_path: Path) -> None:
    peaks = []
    for n in (300, 3000):
        run = _compiler(tmp_path, n)
        run()  # warm caches (pydantic validators, imports) outside the measurement
        tracemalloc.start()
        try:
            run()
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] / peaks[0] < LINEAR, peaks  # each step's full upstream set was ~N^2/2 entries


def test_a_cycle_behind_steps_is_still_reported_by_kahns_sort(tmp_path: Path) -> None:
    from orchestr.errors import ValidationFailed

    path = tmp_path / "workflows" / "w.yaml"
    path.parent.mkdir()
    path.write_text("steps:\n  - id: a\n    run: 'true'\n  - id: b\n    needs: [a, d]\n    run: 'true'\n"
                    "  - id: c\n    needs: [b]\n    run: 'true'\n  - id: d\n    needs: [c]\n    run: 'true'\n")
    project = Project(tmp_path)
    try:
        compile_workflow(project.load_workflow(path), project.tree, project.config)
    except ValidationFailed as exc:
        assert [d.message for d in exc.diagnostics] == ["dependency cycle: b -> d -> c -> b"]
    else:
        raise AssertionError("a cycle compiled")


def _drain(plan: Plan) -> int:
    """Run the ready queue to the end as the engine does, counting status reads."""
    statuses = dict.fromkeys(plan.steps, "pending")
    reads = 0

    def status_of(step: StepId) -> str:
        nonlocal reads
        reads += 1
        return statuses[step]

    queue, upstream = ReadyQueue(plan, status_of), UpstreamIndex(plan, status_of)
    done = 0
    while queue:
        step = queue.pop()
        upstream.of(step)
        statuses[step] = "succeeded"
        queue.finished(step)
        done += 1
    assert done == len(plan.steps)
    return reads


def test_the_engines_ready_queue_costs_the_same_per_step_at_any_size(tmp_path: Path) -> None:
    reads = [_drain(_compiler(tmp_path, n)()) for n in (200, 2000)]
    assert reads[1] / reads[0] < 11, reads


def _engine_run(plan: Plan, root: Path) -> Callable[[], object]:
    from orchestr.engine import Engine, EngineConfig
    from orchestr.events import EventBus, Redactor
    from orchestr.steps.base import ActionResult, Attempt

    class NoopRunner:
        def run(self, attempt: Attempt) -> ActionResult:
            return ActionResult("ok", exit_code=0, outputs={"n": attempt.number})

    class NullRecorder:
        def heartbeat(self, run_id: str) -> None: ...
        def save_step(self, *args: object, **kwargs: object) -> None: ...
        def save_attempt(self, *args: object, **kwargs: object) -> None: ...

    def run() -> object:
        bus = EventBus(run="r", workflow=plan.workflow, redactor=Redactor([]), sinks=[], log_sinks=[])
        engine = Engine(plan, config=EngineConfig(run_id="r", root=root, work_dir=root / "work"), bus=bus,
                        recorder=NullRecorder(), runners={"shell": NoopRunner()})
        outcome = engine.run({})
        assert outcome.status == "succeeded"
        return outcome

    return run


def test_the_engine_costs_the_same_per_step_at_any_size(tmp_path: Path) -> None:
    """Verifying a step used to copy every step's view into its scope: O(steps) per step."""
    small, large = (_engine_run(_compiler(tmp_path, n)(), tmp_path) for n in (200, 2000))
    ratio = _best(large) / _best(small)
    assert ratio < LINEAR, f"2,000 steps cost {ratio:.1f}x 200 steps"
