"""The step graph's shape: a topological order by Kahn's algorithm, layers, and "is X upstream of Y".

Everything here is linear in steps + needs (the ancestry bitsets cost one big-integer OR per
need, a machine word per 64 steps): a 5,000-step chain must compile in well under a second and
without the N^2/2 set entries that storing each step's upstream set took.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from orchestr.plan import StepId

Needs = Mapping[StepId, Sequence[StepId]]


def kahn_layers(needs: Needs) -> tuple[list[list[StepId]], set[StepId]]:
    """Steps in rounds (each round: every step whose needs are all in earlier rounds, in `needs`
    order), and the steps left over because they sit on or behind a dependency cycle.

    Each step keeps a count of its unplaced needs; placing a step decrements its dependents'
    counts, so the whole sort is O(steps + needs) plus sorting each round into file order.
    """
    position = {step: i for i, step in enumerate(needs)}
    remaining = {step: len(set(direct)) for step, direct in needs.items()}
    dependents: dict[StepId, list[StepId]] = {}
    for step, direct in needs.items():
        for need in dict.fromkeys(direct):
            dependents.setdefault(need, []).append(step)
    layer = [step for step, count in remaining.items() if count == 0]
    layers: list[list[StepId]] = []
    while layer:
        layers.append(layer)
        following: list[StepId] = []
        for step in layer:
            for dependent in dependents.get(step, ()):
                remaining[dependent] -= 1
                if remaining[dependent] == 0:
                    following.append(dependent)
        layer = sorted(following, key=position.__getitem__)
    placed = {step for found in layers for step in found}
    return layers, {step for step in needs if step not in placed}


class Ancestry:
    """Which steps run before which: each step's upstream set as one bitset (a Python int).

    `is_upstream(step, target)` is a shift and a mask. Built in topological order, a step's bits
    are its needs' bits ORed together with the needs themselves.
    """

    def __init__(self, order: Sequence[StepId], needs: Needs) -> None:
        self._bit = {step: i for i, step in enumerate(order)}
        self._above: dict[StepId, int] = {}
        for step in order:
            bits = 0
            for need in needs.get(step, ()):
                if need in self._above:  # an unknown need, or the step itself, is reported elsewhere
                    bits |= self._above[need] | (1 << self._bit[need])
            self._above[step] = bits

    def __bool__(self) -> bool:
        return bool(self._bit)

    def is_upstream(self, step: StepId, target: StepId) -> bool:
        """Does `step` run after `target` (directly or transitively needs it)?"""
        bit = self._bit.get(target)
        return bit is not None and bool(self._above.get(step, 0) >> bit & 1)
