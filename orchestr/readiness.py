"""Which steps may start, and what happened upstream of each: the engine's bookkeeping, O(steps + needs).

Both pieces read step statuses through a function, so they hold no state of their own beyond
counters and memos, and neither walks the graph more than once per step over a whole run.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass

from orchestr.plan import Plan, StepId

StatusOf = Callable[[StepId], str]
TERMINAL = frozenset({"succeeded", "failed", "unverified", "skipped", "cancelled"})


class ReadyQueue:
    """Pending steps whose needs have all finished, handed out in plan order.

    Each step keeps a count of its unfinished needs; `finished(step)` decrements its dependents',
    so a completion costs O(its dependents), not a scan of the plan.
    """

    def __init__(self, plan: Plan, status_of: StatusOf) -> None:
        self._status_of = status_of
        self._position = {step_id: i for i, step_id in enumerate(plan.steps)}
        self._dependents: dict[StepId, list[StepId]] = {}
        self._unfinished: dict[StepId, int] = {}
        self._ready: list[tuple[int, StepId]] = []
        for step_id, step in plan.steps.items():
            self._unfinished[step_id] = sum(1 for n in step.needs if status_of(n) not in TERMINAL)
            for need in step.needs:
                self._dependents.setdefault(need, []).append(step_id)
        for step_id in plan.steps:
            self._push_if_ready(step_id)

    def __bool__(self) -> bool:
        return bool(self._ready)

    def pop(self) -> StepId:
        return heapq.heappop(self._ready)[1]

    def finished(self, step_id: StepId) -> None:
        """`step_id` reached a terminal status: its dependents have one unfinished need less."""
        for dependent in self._dependents.get(step_id, ()):
            self._unfinished[dependent] -= 1
            self._push_if_ready(dependent)

    def _push_if_ready(self, step_id: StepId) -> None:
        if self._unfinished[step_id] == 0 and self._status_of(step_id) == "pending":
            heapq.heappush(self._ready, (self._position[step_id], step_id))


@dataclass(frozen=True)
class Upstream:
    """The first step upstream of one (directly or transitively) that failed or was unverified, and
    the first that was cancelled: what `failure()` and `cancelled()` read."""

    failed: StepId | None = None
    cancelled: StepId | None = None


class UpstreamIndex:
    """`Upstream` for any step whose needs have finished, each step summarised once.

    A step's summary depends only on its needs' statuses and summaries, which are final once its
    needs have finished, so memoising is exact and a whole run costs O(steps + needs).
    """

    def __init__(self, plan: Plan, status_of: StatusOf) -> None:
        self._plan = plan
        self._status_of = status_of
        self._known: dict[StepId, Upstream] = {}

    def of(self, step_id: StepId) -> Upstream:
        # iterative, not recursive: a chain of thousands of steps must not hit the recursion limit
        stack = [step_id]
        while stack:
            top = stack[-1]
            if top in self._known:
                stack.pop()
                continue
            missing = [n for n in self._plan.steps[top].needs if n not in self._known]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            self._known[top] = self._summarise(top)
        return self._known[step_id]

    def _summarise(self, step_id: StepId) -> Upstream:
        failed: StepId | None = None
        cancelled: StepId | None = None
        for need in self._plan.steps[step_id].needs:
            status, above = self._status_of(need), self._known[need]
            own_failure = status == "unverified" or (
                status == "failed" and not self._plan.steps[need].spec.continue_on_error)
            failed = failed or (need if own_failure else above.failed)
            cancelled = cancelled or (need if status == "cancelled" else above.cancelled)
        return Upstream(failed, cancelled)
