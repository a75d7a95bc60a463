"""validate, plan, context and schema on a small, complete project."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ProjectDir


@pytest.fixture
def org(project: ProjectDir) -> ProjectDir:
    project.write("policies/refunds.md", "Refunds above 500 EUR need a manager.\n")
    project.write("contexts/acme.yaml", """
        title: Acme
        description: Acme sells anvils.
        facts: ["Founded 1949"]
        rules: ["Be polite"]
        vars: { region: eu, currency: EUR }
        permissions:
          tools: [read_file, write_file, list_files]
          read: ["**"]
          write: ["out/**"]
    """)
    project.write("contexts/acme/support.yaml", """
        title: Support
        rules: ["Never promise a refund above 500 EUR"]
        files: [policies/refunds.md]
        vars: { region: us }
        permissions:
          write: ["out/support/**"]
    """)
    project.write("workflows/triage.yaml", """
        name: triage
        context: acme/support
        defaults: { model: "anthropic:claude-sonnet-4-6" }
        agents:
          triager:
            instructions: Triage tickets.
            tools: [read_file, write_file]
        steps:
          - id: fetch
            run: echo fetched
          - id: triage
            needs: [fetch]
            agent: triager
            prompt: "Triage for ${{ vars.region }}"
            verify: [ { file_exists: out/support/triage.json } ]
    """)
    return project


def test_validate_ok(org: ProjectDir) -> None:
    result = org.cli("validate")
    assert result.exit_code == 0, result.output
    assert "valid: 1 workflow(s) (triage), 2 context node(s)" in result.stdout


def test_an_agent_step_with_needs_may_attach_a_file_an_upstream_step_writes(org: ProjectDir) -> None:
    path = org.root / "workflows/triage.yaml"
    path.write_text(path.read_text().replace('prompt: "Triage', 'files: [out/tickets.json]\n    prompt: "Triage'))
    assert "files: [out/tickets.json]" in path.read_text()
    assert org.cli("validate").exit_code == 0
    path.write_text(path.read_text().replace("    needs: [fetch]\n", ""))
    result = org.cli("validate")
    assert result.exit_code == 2 and "file 'out/tickets.json' does not exist" in result.stderr


def test_validate_json(org: ProjectDir) -> None:
    result = org.cli("validate", "--format", "json")
    assert json.loads(result.stdout) == {"valid": True, "workflows": ["triage"], "contexts": 2, "diagnostics": []}


def test_context_show_renders_the_chain_root_first_byte_identically(org: ProjectDir) -> None:
    first = org.cli("context", "show", "acme/support", "--text")
    second = org.cli("context", "show", "acme/support", "--text")
    assert first.exit_code == 0 and first.stdout == second.stdout
    text = first.stdout
    assert text.startswith('<context node="acme/support">')
    assert text.index("## acme: Acme") < text.index("## acme/support: Support")
    assert '<file path="policies/refunds.md">\nRefunds above 500 EUR need a manager.\n</file>' in text
    assert "- region: us" in text and "- currency: EUR" in text
    assert "1. Be polite\n2. Never promise a refund above 500 EUR" in text


def test_context_show_json_has_intersected_permissions(org: ProjectDir) -> None:
    shown = json.loads(org.cli("context", "show", "acme/support", "--format", "json").stdout)
    assert shown["chain"] == ["acme", "acme/support"]
    assert shown["vars"] == {"region": "us", "currency": "EUR"}
    assert shown["permissions"]["write"] == ["out/support/**"]
    assert [level["source"] for level in shown["permission_levels"]["write"]] == ["context acme", "context acme/support"]


def test_context_show_unknown_node_suggests(org: ProjectDir) -> None:
    result = org.cli("context", "show", "acme/suport")
    assert result.exit_code == 2
    assert "unknown context 'acme/suport'; did you mean 'acme/support'?" in result.stderr


def test_context_tree(org: ProjectDir) -> None:
    result = org.cli("context", "tree")
    assert "acme  Acme" in result.stdout and "support  Support" in result.stdout
    nested = json.loads(org.cli("context", "tree", "--format", "json").stdout)
    assert nested == [{"id": "acme", "title": "Acme", "children": [{"id": "acme/support", "title": "Support", "children": []}]}]


def test_plan_formats(org: ProjectDir) -> None:
    plan = json.loads(org.cli("plan", "triage", "--format", "json").stdout)
    assert plan["layers"] == [["fetch"], ["triage"]]
    triage = plan["steps"][1]
    assert triage["context_chain"] == ["acme", "acme/support"]
    assert triage["model"] == "anthropic:claude-sonnet-4-6"
    assert triage["permissions"]["write"] == ["out/support/**"]
    assert triage["permissions"]["tools"] == ["read_file", "write_file"]
    mermaid = org.cli("plan", "triage", "--format", "mermaid").stdout
    assert "s_fetch --> s_triage" in mermaid
    dot = org.cli("plan", "workflows/triage.yaml", "--format", "dot").stdout
    assert '"fetch" -> "triage";' in dot
    text = org.cli("plan", "triage").stdout
    assert "acme/support" in text and "triager" in text


def test_plan_unknown_workflow_suggests(org: ProjectDir) -> None:
    result = org.cli("plan", "triag")
    assert result.exit_code == 2 and "did you mean 'triage'?" in result.stderr


def test_agent_tool_beyond_context_is_an_error(org: ProjectDir) -> None:
    workflow = (org.root / "workflows/triage.yaml").read_text().replace("[read_file, write_file]", "[read_file, run_command]")
    (org.root / "workflows/triage.yaml").write_text(workflow)
    result = org.cli("validate")
    assert result.exit_code == 2
    assert "agent 'triager' is given tool 'run_command' but its context does not allow it" in result.stderr


@pytest.mark.parametrize("kind", ["workflow", "context", "config"])
def test_schema_matches_the_committed_copy(kind: str, project: ProjectDir) -> None:
    from tests.conftest import REPO

    result = project.cli("schema", kind)
    schema = json.loads(result.stdout)
    assert schema["$schema"].endswith("2020-12/schema")
    committed = json.loads((REPO / "docs" / "schema" / f"{kind}.schema.json").read_text())
    assert committed == schema, "docs/schema is stale: run `make schemas`"


def test_schema_validates_a_workflow(project: ProjectDir) -> None:
    from jsonschema import Draft202012Validator

    schema = json.loads(project.cli("schema", "workflow").stdout)
    validator = Draft202012Validator(schema)
    good = {"steps": [{"id": "a", "run": "true", "verify": [{"file_exists": "x"}], "timeout": "5m"}]}
    assert not list(validator.iter_errors(good))
    assert list(validator.iter_errors({"steps": [{"id": "a", "run": "true", "bogus": 1}]}))


@pytest.mark.parametrize("value", ["90s", "1h 30m", " 1h30m ", "1.5h", "500ms", 90, 0.5])
def test_schema_accepts_every_duration_the_loader_accepts(value: object, project: ProjectDir) -> None:
    from jsonschema import Draft202012Validator

    from orchestr.models import Retry

    schema = json.loads(project.cli("schema", "workflow").stdout)
    workflow = {"steps": [{"id": "a", "run": "true", "timeout": value, "retry": {"backoff": value}}]}
    assert not list(Draft202012Validator(schema).iter_errors(workflow))
    assert Retry.model_validate({"backoff": value}).backoff.total_seconds() > 0


@pytest.mark.parametrize("value", ["5 minutes", "1 h", "soon", -1, 0, True])
def test_schema_rejects_what_the_loader_rejects_as_a_timeout(value: object, project: ProjectDir) -> None:
    from jsonschema import Draft202012Validator

    schema = json.loads(project.cli("schema", "workflow").stdout)
    workflow = {"steps": [{"id": "a", "run": "true", "timeout": value}]}
    assert list(Draft202012Validator(schema).iter_errors(workflow))
    project.write("workflows/w.yaml", f"steps:\n  - id: a\n    run: 'true'\n    timeout: {json.dumps(value)}\n")
    assert project.cli("validate").exit_code == 2


def test_schema_shows_duration_defaults_as_written_in_files(project: ProjectDir) -> None:
    schema = json.loads(project.cli("schema", "workflow").stdout)
    assert schema["$defs"]["Schedule"]["properties"]["catchup_window"]["default"] == "24h"


def test_version(project: ProjectDir) -> None:
    from orchestr import __version__

    assert project.cli("--version").stdout.strip() == f"orchestr {__version__}"
