"""`orchestr plan` and `context tree` as text: nothing a reader needs is cut, no bare keys, no "1 rules"."""

from __future__ import annotations

from tests.conftest import ProjectDir


def _write(project: ProjectDir) -> None:
    project.write("contexts/acme.yaml", """
        title: Acme
        rules: ["Be kind"]
        permissions:
          tools: [read_file, write_file]
          read: ["knowledge/escalations/**", "out/customer-success/**"]
          write: ["out/customer-success/escalations/**"]
          hosts: []
    """)
    project.write("workflows/escalations.yaml", """
        context: acme
        agents:
          summarizer:
            model: "anthropic:claude-sonnet-4-6-20260101"
            instructions: Summarize.
            tools: [read_file, write_file]
        steps:
          - id: collect-escalations
            run: "true"
          - id: summarize-weekly
            needs: [collect-escalations]
            agent: summarizer
            prompt: Summarize.
            verify:
              - file_exists: out/customer-success/escalations/summary.md
    """)


def test_plan_at_160_columns_keeps_model_names_ids_and_paths_whole(project: ProjectDir) -> None:
    _write(project)
    shown = project.cli("plan", "escalations", env={"COLUMNS": "160"})
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert max(len(line) for line in lines) <= 160
    assert "…" not in shown.stdout
    assert any(line.rstrip().endswith("verify") for line in lines), "the table is cropped at the right"
    assert any(line.rstrip().endswith("file_exists") for line in lines), "the table is cropped at the right"
    for whole in ("anthropic:claude-sonnet-4-6-20260101", "collect-escalations",
                  "summarize-weekly", "out/customer-success/escalations/**"):
        assert any(whole in line for line in lines), whole
    assert "hosts: none" in shown.stdout
    assert not any(line.rstrip(" │").endswith("hosts:") for line in lines)


def test_plan_in_a_narrow_terminal_folds_instead_of_cropping(project: ProjectDir) -> None:
    _write(project)
    shown = project.cli("plan", "escalations", env={"COLUMNS": "90"})
    assert shown.exit_code == 0, shown.output
    assert "…" not in shown.stdout
    assert max(len(line) for line in shown.stdout.splitlines()) <= 90
    assert any(line.rstrip().endswith("verify") for line in shown.stdout.splitlines()), "cropped at the right"


def test_context_tree_counts_one_rule_as_one_rule(project: ProjectDir) -> None:
    _write(project)
    shown = project.cli("context", "tree")
    assert "(1 rule)" in shown.stdout and "(1 rules)" not in shown.stdout
