"""Issue 11, item 7: multi-line outputs, `key<<DELIM` ... `DELIM` in $ORCHESTR_OUTPUT as in GitHub Actions."""

from __future__ import annotations

import json

import pytest

from orchestr.steps.shell import OutputsError, parse_outputs
from tests.conftest import ProjectDir


def test_heredoc_values_keep_their_newlines_beside_plain_lines() -> None:
    text = "a=1\nnotes<<EOF\nline one\nb=not a key\n\nEOF\nc=x<<y\nd<<END=\nz\nEND=\n"
    assert parse_outputs(text) == {"a": "1", "notes": "line one\nb=not a key\n", "c": "x<<y", "d": "z"}


def test_an_empty_heredoc_is_an_empty_string() -> None:
    assert parse_outputs("empty<<EOF\nEOF\n") == {"empty": ""}


def test_an_unclosed_heredoc_is_an_error_naming_the_delimiter() -> None:
    with pytest.raises(OutputsError, match="'notes<<EOF' has no closing 'EOF' line"):
        parse_outputs("notes<<EOF\nline\n")


def test_a_multi_line_output_reaches_the_next_step(project: ProjectDir) -> None:
    project.write("workflows/ml.yaml", """
        name: ml
        steps:
          - id: make
            run: |
              { echo "body<<EOF"; printf 'first\\nsecond=2\\n'; echo EOF; echo "after=yes"; } >> "$ORCHESTR_OUTPUT"
          - id: use
            needs: [make]
            env: { BODY: "${{ steps.make.outputs.body }}", AFTER: "${{ steps.make.outputs.after }}" }
            run: printf '%s|%s' "$BODY" "$AFTER" > got.txt
    """)
    result = project.cli("run", "ml", "-q")
    assert result.exit_code == 0, result.output
    assert (project.root / "got.txt").read_text() == "first\nsecond=2|yes"


def test_an_unclosed_heredoc_fails_the_step_with_the_fix(project: ProjectDir) -> None:
    project.write("workflows/bad.yaml", """
        name: bad
        steps:
          - id: make
            run: printf 'body<<EOF\\nno end\\n' >> "$ORCHESTR_OUTPUT"
    """)
    result = project.cli("run", "bad", "-q")
    assert result.exit_code == 1
    show = json.loads(project.cli("runs", "show", "last", "--format", "json").stdout)
    assert "'body<<EOF' has no closing 'EOF' line" in json.dumps(show)
