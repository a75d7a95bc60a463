"""`orchestr init`: a project that validates and runs at once, and never clobbers a user's files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from tests.conftest import REPO, ProjectDir

SCHEMA_LINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")
KINDS = ("workflow", "context", "config")


def test_init_makes_a_project_that_validates_and_runs_hello_without_a_key(project: ProjectDir) -> None:
    made = project.cli("init", "fresh")
    assert made.exit_code == 0, made.output
    fresh = ProjectDir(project.root / "fresh")
    for name in ("orchestr.yaml", "contexts/team.yaml", "workflows/hello.yaml", "workflows/summarize.yaml",
                 ".gitignore"):
        assert (fresh.root / name).is_file(), name
    assert ".orchestr/" in (fresh.root / ".gitignore").read_text().splitlines()

    checked = fresh.cli("validate")
    assert checked.exit_code == 0, checked.output
    assert "2 workflow(s) (hello, summarize), 1 context node(s)" in checked.stdout
    env = {"ANTHROPIC_API_KEY": "", "OPENAI_API_KEY": ""}
    ran = fresh.cli("run", "hello", "-i", "who=Ada", env=env)
    assert ran.exit_code == 0, ran.output
    assert (fresh.root / "out/hello.txt").read_text() == "Hello, Ada!\n"


def test_the_agent_workflow_has_a_check_and_a_context(project: ProjectDir) -> None:
    project.cli("init")
    plan = json.loads(project.cli("plan", "summarize", "--format", "json").stdout)
    (step,) = plan["steps"]
    assert step["kind"] == "agent"
    assert step["context"] == "team"
    assert set(step["verify"]) >= {"file_exists", "tool_called"}


def test_init_refuses_to_overwrite_and_force_replaces(project: ProjectDir) -> None:
    project.write("workflows/hello.yaml", "steps: [{id: mine, run: echo mine}]\n")
    refused = project.cli("init")
    assert refused.exit_code == 2
    assert "refusing to overwrite workflows/hello.yaml" in refused.stderr
    assert "--force" in refused.stderr
    assert "Traceback" not in refused.output
    assert (project.root / "workflows/hello.yaml").read_text() == "steps: [{id: mine, run: echo mine}]\n"
    assert not (project.root / "orchestr.yaml").exists(), "nothing is written when anything would be replaced"

    forced = project.cli("init", "--force")
    assert forced.exit_code == 0, forced.output
    assert "id: greet" in (project.root / "workflows/hello.yaml").read_text()


def test_init_keeps_an_existing_gitignore_and_adds_its_lines(project: ProjectDir) -> None:
    project.write(".gitignore", "node_modules/\n")
    assert project.cli("init").exit_code == 0
    lines = (project.root / ".gitignore").read_text().splitlines()
    assert lines[0] == "node_modules/"
    assert ".orchestr/" in lines and ".env" in lines


def test_init_into_an_unwritable_place_is_a_clear_error(project: ProjectDir) -> None:
    (project.root / "blocker").write_text("a file, not a folder")
    result = project.cli("init", "blocker/inner")
    assert result.exit_code == 2
    assert "cannot write the project into" in result.stderr
    assert "Traceback" not in result.output


def _modeline_target(path: Path) -> Path:
    match = SCHEMA_LINE.match(path.read_text().splitlines()[0])
    assert match, f"{path.name} has no yaml-language-server $schema line"
    return (path.parent / match.group(1)).resolve()


def test_every_scaffolded_file_points_at_a_schema_that_exists_and_accepts_it(project: ProjectDir) -> None:
    project.cli("init")
    files = {"orchestr.yaml": "config", "contexts/team.yaml": "context",
             "workflows/hello.yaml": "workflow", "workflows/summarize.yaml": "workflow"}
    for name, kind in files.items():
        path = project.root / name
        target = _modeline_target(path)
        assert target == (project.root / f"schemas/orchestr/{kind}.schema.json").resolve(), name
        schema = json.loads(target.read_text())
        assert schema == json.loads((REPO / "docs/schema" / f"{kind}.schema.json").read_text())
        errors = list(Draft202012Validator(schema).iter_errors(yaml.safe_load(path.read_text())))
        assert errors == [], (name, errors)


@pytest.mark.parametrize("kind", KINDS)
def test_the_packaged_schemas_are_the_documented_ones(kind: str, project: ProjectDir) -> None:
    shown = project.cli("schema", kind, "--path")
    assert shown.exit_code == 0, shown.output
    packaged = Path(shown.stdout.strip())
    assert packaged.name == f"{kind}.schema.json" and packaged.is_file()
    assert packaged.read_text() == (REPO / "docs/schema" / f"{kind}.schema.json").read_text(), \
        "orchestr/data/schema is stale: run `make schemas`"
    assert json.loads(packaged.read_text()) == json.loads(project.cli("schema", kind).stdout)
