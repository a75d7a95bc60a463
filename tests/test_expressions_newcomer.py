"""Expressions a newcomer writes: hyphenated step ids in dotted form, text compared with numbers."""

from __future__ import annotations

import pytest

from orchestr.expressions import ExpressionError, evaluate, references
from tests.conftest import ProjectDir


def test_a_hyphenated_step_id_reads_in_dotted_form(project: ProjectDir) -> None:
    project.write("workflows/week.yaml", """
        steps:
          - id: pick-day
            run: echo "day=monday" >> "$ORCHESTR_OUTPUT"
          - id: use-it
            needs: [pick-day]
            run: printf '%s\\n' "$DAY" > day.txt
            env: { DAY: "${{ steps.pick-day.outputs.day }}" }
            if: ${{ steps.pick-day.outputs.day != 'sunday' && steps.pick-day.status == 'succeeded' }}
    """)
    checked = project.cli("validate")
    assert checked.exit_code == 0, checked.output
    ran = project.cli("run", "week")
    assert ran.exit_code == 0, ran.output
    assert (project.root / "day.txt").read_text() == "monday\n"


def test_an_unknown_hyphenated_step_is_named_whole(project: ProjectDir) -> None:
    project.write("workflows/week.yaml", """
        steps:
          - id: pick-day
            run: echo "day=monday" >> "$ORCHESTR_OUTPUT"
          - id: use-it
            needs: [pick-day]
            run: echo "$DAY"
            env: { DAY: "${{ steps.pick-dya.outputs.day }}" }
    """)
    checked = project.cli("validate")
    assert checked.exit_code == 2
    assert "unknown step 'pick-dya'; did you mean 'pick-day'?" in checked.stderr
    assert "unknown step 'pick'" not in checked.stderr


def test_the_dotted_form_is_not_rewritten_inside_strings_or_after_other_names() -> None:
    assert evaluate('"steps.pick-day"', {}) == "steps.pick-day"
    assert evaluate("vars.a-1", {"vars": {"a": 3}}) == 2
    assert [str(r) for r in references("steps.pick-day.outputs.day")] == ["steps.pick-day.outputs.day"]


def test_text_compared_with_a_number_gets_a_conversion_hint() -> None:
    with pytest.raises(ExpressionError) as caught:
        evaluate("inputs.n > 3", {"inputs": {"n": "5"}})
    assert "'>' not supported between instances of 'str' and 'int'" in str(caught.value)
    assert "| int" in str(caught.value)
    assert evaluate("inputs.n | int > 3", {"inputs": {"n": "5"}}) is True


def test_the_hint_reaches_the_run_output(project: ProjectDir) -> None:
    project.write("workflows/cmp.yaml", """
        inputs:
          n: { type: string, default: "5" }
        steps:
          - id: s
            if: ${{ inputs.n > 3 }}
            run: echo hi
    """)
    ran = project.cli("run", "cmp")
    assert ran.exit_code == 1
    assert "convert with `| int`" in ran.stdout
