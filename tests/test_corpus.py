"""The bad-input corpus: every folder under tests/corpus/ is a small broken project.

`orchestr validate` run inside it must exit 2, without a traceback, and print exactly the
diagnostics in its `expected.txt`: each `file:line:col: error: message` line and its `  hint:` line,
in order (the trailing "N errors" count is not compared). An optional `args.txt` holds extra
arguments for `validate` (e.g. a path to a missing file).

After changing a message on purpose, rewrite the expected files and review every diff by eye:

    ORCHESTR_UPDATE_CORPUS=1 .venv/bin/pytest tests/test_corpus.py
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.conftest import ProjectDir

CORPUS = Path(__file__).parent / "corpus"
CASES = sorted(p.name for p in CORPUS.iterdir() if p.is_dir())
DIAGNOSTIC = re.compile(r"^(?:\S.*?: (?:error|warning): |  hint: )")


def diagnostic_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if DIAGNOSTIC.match(line)]


@pytest.mark.parametrize("case", CASES)
def test_broken_project_is_reported_exactly(case: str) -> None:
    folder = CORPUS / case
    args_file = folder / "args.txt"
    args = args_file.read_text().split() if args_file.is_file() else []
    before = _files(folder)

    result = ProjectDir(folder).cli("validate", *args)

    assert "Traceback" not in result.output, result.output
    assert result.exit_code == 2, result.output
    assert result.stdout == "", "diagnostics belong on stderr"
    lines = diagnostic_lines(result.stderr)
    expected_file = folder / "expected.txt"
    if os.environ.get("ORCHESTR_UPDATE_CORPUS") == "1":
        expected_file.write_text("\n".join(lines) + "\n")
    assert lines, f"no diagnostics printed:\n{result.stderr}"
    assert lines == expected_file.read_text().splitlines()
    assert _files(folder) == before, "validate must not write files"


def _files(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.name != "expected.txt")


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 35
    for case in CASES:
        assert (CORPUS / case / "expected.txt").is_file(), f"{case}: run with ORCHESTR_UPDATE_CORPUS=1"


def test_an_empty_orchestr_yaml_is_valid(project: ProjectDir) -> None:
    """Unlike a workflow or a context node, the config has no required key: `touch` is enough."""
    project.write("orchestr.yaml", "# nothing to configure yet\n")
    project.write("workflows/hello.yaml", "steps:\n  - id: hello\n    run: echo hello\n")
    result = project.cli("validate")
    assert result.exit_code == 0, result.output
