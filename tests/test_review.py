"""`orchestr impact` and `orchestr.lock` on real git repositories the tests build, commit and edit."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from inline_snapshot import snapshot

from tests.conftest import REPO, ProjectDir

VENV_BIN = Path(sys.executable).parent

CONFIG = """\
defaults: { model: "anthropic:claude-sonnet-4-6" }
mcp_servers:
  clock: { command: mcp-server-time, args: ["--local-timezone", "UTC"], reach: {} }
"""
ORG = """\
title: Org
description: The whole company.
rules: ["Be factual."]
vars: { channel: "#ops" }
permissions:
  tools: [read_file, write_file, list_files, "clock.*"]
  read: ["docs/**", "out/**"]
  write: ["out/**"]
"""
ALPHA = """\
name: alpha
context: org
agents:
  writer:
    context: org/a
    instructions: You write reports.
    tools: [read_file, write_file]
  timekeeper:
    context: solo
    tools: ["clock.*"]
steps:
  - id: draft
    agent: writer
    prompt: Write out/a/report.md.
    permissions: { write: ["out/a/**"] }
    verify: [ { file_exists: out/a/report.md } ]
  - id: tell-time
    agent: timekeeper
    prompt: What time is it?
  - id: notify
    needs: [draft]
    run: echo "$CHANNEL"
    env: { CHANNEL: "${{ vars.channel }}" }
"""
BETA = """\
name: beta
agents:
  reader: { context: org/b, tools: [read_file] }
steps:
  - id: summarise
    agent: reader
    files: [docs/note.md]
    prompt: Summarise the note.
"""
GAMMA = """\
name: gamma
steps:
  - { id: hello, run: "echo hello > out.txt" }
"""


def git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-c",
                           "commit.gpgsign=false", *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout


@pytest.fixture
def repo(project: ProjectDir) -> ProjectDir:
    """A committed project: root context `org` (children a, b), a separate root `solo`, three workflows."""
    project.write("orchestr.yaml", CONFIG)
    project.write("contexts/org.yaml", ORG)
    project.write("contexts/org/a.yaml", "title: Team A\nrules: [\"Sign every report.\"]\n")
    project.write("contexts/org/b.yaml", "title: Team B\n")
    project.write("contexts/solo.yaml", "title: Solo\npermissions: { tools: [\"clock.*\"] }\n")
    project.write("docs/note.md", "The note says hello.\n")
    project.write("workflows/alpha.yaml", ALPHA)
    project.write("workflows/beta.yaml", BETA)
    project.write("workflows/gamma.yaml", GAMMA)
    git(project.root, "init", "-q", "-b", "main")
    git(project.root, "add", ".")
    git(project.root, "commit", "-qm", "base")
    return project


def edit(repo: ProjectDir, relative: str, old: str, new: str) -> None:
    path = repo.root / relative
    text = path.read_text()
    assert old in text, f"{old!r} not in {relative}"
    path.write_text(text.replace(old, new))


def impact(repo: ProjectDir, *args: str) -> dict[str, object]:
    result = repo.cli("impact", "--base", "main", "--format", "json", *args)
    assert result.exit_code == 0, result.output
    found: dict[str, object] = json.loads(result.stdout)
    return found


def changed(found: dict[str, object]) -> dict[str, list[str]]:
    steps = found["steps"]
    assert isinstance(steps, list)
    return {f"{s['workflow']}/{s['step']}": s["changed"] for s in steps}


def test_a_rule_added_to_a_root_context_lists_every_step_that_inherits_it_and_no_other(repo: ProjectDir) -> None:
    edit(repo, "contexts/org.yaml", 'rules: ["Be factual."]', 'rules: ["Be factual.", "Never guess."]')
    found = impact(repo)
    assert changed(found) == {"alpha/draft": ["prompt"], "beta/summarise": ["prompt"]}
    assert found["contexts_changed"] == ["org"]
    steps = {s["step"]: s for s in found["steps"]}  # type: ignore[union-attr]
    assert steps["draft"]["via"] == ["org"]
    assert "+- Never guess." in steps["draft"]["prompt_diff"]
    assert "+2. Never guess." in steps["summarise"]["prompt_diff"]
    assert not found["permissions_widened"]


def test_impact_reads_the_base_from_git_objects_and_leaves_the_working_tree_alone(repo: ProjectDir) -> None:
    edit(repo, "contexts/org/b.yaml", "Team B", "Team Bee")
    (repo.root / "untracked.txt").write_text("mine\n")
    before = (git(repo.root, "status", "--porcelain"), git(repo.root, "rev-parse", "HEAD"), git(repo.root, "stash", "list"))
    assert changed(impact(repo)) == {"beta/summarise": ["prompt"]}
    after = (git(repo.root, "status", "--porcelain"), git(repo.root, "rev-parse", "HEAD"), git(repo.root, "stash", "list"))
    assert before == after
    assert (repo.root / "contexts/org/b.yaml").read_text() == "title: Team Bee\n"


def test_a_widened_step_permission_is_listed_and_fails_the_permissions_gate(repo: ProjectDir) -> None:
    edit(repo, "workflows/alpha.yaml", 'permissions: { write: ["out/a/**"] }', 'permissions: { write: ["out/**"] }')
    found = impact(repo)
    assert changed(found) == {"alpha/draft": ["permissions"]}
    draft = found["steps"][0]  # type: ignore[index]
    assert draft["widened"] == ["write"] and found["permissions_widened"]
    assert "-write: out/a/**\n+write: out/**\n" in draft["permissions_diff"]
    gate = repo.cli("impact", "--base", "main", "--fail-on", "permissions")
    assert gate.exit_code == 1, gate.output
    assert "WIDENS write" in gate.stdout


def test_a_narrowed_permission_passes_the_permissions_gate(repo: ProjectDir) -> None:
    edit(repo, "workflows/alpha.yaml", 'permissions: { write: ["out/a/**"] }', 'permissions: { write: ["out/a/x/**"] }')
    assert changed(impact(repo)) == {"alpha/draft": ["permissions"]}
    assert repo.cli("impact", "--base", "main", "--fail-on", "permissions").exit_code == 0
    assert repo.cli("impact", "--base", "main", "--fail-on", "any").exit_code == 1


def test_a_model_changed_in_defaults_lists_each_agent_step_that_uses_the_default(repo: ProjectDir) -> None:
    edit(repo, "orchestr.yaml", "anthropic:claude-sonnet-4-6", "openai:gpt-4.1")
    found = impact(repo)
    assert changed(found) == {"alpha/draft": ["model"], "alpha/tell-time": ["model"], "beta/summarise": ["model"]}
    text = repo.cli("impact", "--base", "main").stdout
    assert "model anthropic:claude-sonnet-4-6 -> openai:gpt-4.1" in text


def test_an_edited_attached_file_changes_the_prompt_of_the_step_attaching_it(repo: ProjectDir) -> None:
    (repo.root / "docs/note.md").write_text("The note says goodbye.\n")
    found = impact(repo)
    assert changed(found) == {"beta/summarise": ["prompt"]}
    diff = found["steps"][0]["prompt_diff"]  # type: ignore[index]
    assert "-The note says hello.\n+The note says goodbye.\n" in diff


def test_a_changed_mcp_server_lists_the_steps_that_can_use_it(repo: ProjectDir) -> None:
    edit(repo, "orchestr.yaml", '"UTC"', '"Europe/Berlin"')
    found = impact(repo)
    assert changed(found) == {"alpha/tell-time": ["servers"]}
    assert "mcp server clock" in found["steps"][0]["permissions_diff"]  # type: ignore[index]


def test_a_context_var_change_reaches_the_shell_step_that_reads_it(repo: ProjectDir) -> None:
    edit(repo, "contexts/org.yaml", '"#ops"', '"#ops-urgent"')
    assert changed(impact(repo)) == {"alpha/draft": ["prompt"], "alpha/notify": ["command"],
                                     "beta/summarise": ["prompt"]}


def test_workflows_added_and_removed(repo: ProjectDir) -> None:
    (repo.root / "workflows/gamma.yaml").unlink()
    repo.write("workflows/delta.yaml", """\
        name: delta
        agents: { w: { context: org, tools: [read_file] } }
        steps: [ { id: look, agent: w, prompt: Look around. } ]
    """)
    found = impact(repo)
    assert found["workflows"] == {"added": ["delta"], "removed": ["gamma"]}
    steps = {f"{s['workflow']}/{s['step']}": s["change"] for s in found["steps"]}  # type: ignore[union-attr]
    assert steps == {"delta/look": "added", "gamma/hello": "removed"}
    # a new agent step is new authority, so the permissions gate stops it for a human to look at
    assert found["permissions_widened"]


def test_whitespace_comments_and_key_order_change_nothing_and_leave_the_lock_alone(repo: ProjectDir) -> None:
    assert repo.cli("lock").exit_code == 0
    locked = (repo.root / "orchestr.lock").read_bytes()
    repo.write("contexts/org.yaml", """\
        # the company-wide node, reformatted
        permissions:
            write:   [ "out/**" ]
            read:
              - "docs/**"
              - "out/**"
            tools: [read_file, write_file, list_files, "clock.*"]   # every tool
        vars: {channel: '#ops'}
        rules:
          - Be factual.
        description: |
          The whole company.
        title: "Org"
    """)
    edit(repo, "workflows/alpha.yaml", "steps:\n", "# steps below\nsteps:\n\n")
    found = impact(repo)
    assert found["steps"] == [] and found["contexts_changed"] == []
    text = repo.cli("impact", "--base", "main")
    assert "no step's effective prompt" in text.stdout
    assert repo.cli("lock", "--check").exit_code == 0
    assert repo.cli("lock").exit_code == 0
    assert (repo.root / "orchestr.lock").read_bytes() == locked


def test_the_lock_is_byte_identical_sorted_and_small(repo: ProjectDir) -> None:
    assert repo.cli("lock").stdout.startswith("wrote orchestr.lock (3 agent steps)")
    first = (repo.root / "orchestr.lock").read_text()
    (repo.root / "orchestr.lock").unlink()
    repo.cli("lock")
    assert (repo.root / "orchestr.lock").read_text() == first
    assert "up to date" in repo.cli("lock").stdout
    body = [line for line in first.splitlines() if not line.startswith("#")]
    assert body[0] == "version: 1"
    keys = [line.strip().rstrip(":") for line in body if line.startswith("  ") and not line.startswith("    ")]
    assert keys == sorted(keys) == ["alpha/draft", "alpha/tell-time", "beta/summarise"]
    assert len(body) < 15 * len(keys)
    assert "write: [out/a/**]" in first and "clock:" in first and "prompt_sha256: " in first


def test_lock_check_names_each_stale_step_and_exits_1(repo: ProjectDir) -> None:
    missing = repo.cli("lock", "--check")
    assert missing.exit_code == 1 and "orchestr.lock does not exist" in missing.stderr
    repo.cli("lock")
    assert repo.cli("lock", "--check").exit_code == 0
    edit(repo, "contexts/org/a.yaml", "Sign every report.", "Sign and date every report.")
    edit(repo, "workflows/beta.yaml", "tools: [read_file]", "tools: [read_file, list_files]")
    stale = repo.cli("lock", "--check")
    assert stale.exit_code == 1
    assert "stale: alpha/draft: prompt changed" in stale.stderr
    assert "stale: beta/summarise: permissions, tools changed" in stale.stderr
    assert "alpha/tell-time" not in stale.stderr
    assert "run `orchestr lock`" in stale.stderr


def test_a_hand_edited_lock_is_stale(repo: ProjectDir) -> None:
    repo.cli("lock")
    edit(repo, "orchestr.lock", "version: 1", "version: 1\n# my note")
    assert repo.cli("lock", "--check").exit_code == 1
    (repo.root / "orchestr.lock").write_text("[not, a, lock]\n")
    broken = repo.cli("lock", "--check")
    assert broken.exit_code == 1 and "not a version-1 lock" in broken.stderr


def test_run_says_nothing_without_a_lock_and_warns_on_a_stale_one(repo: ProjectDir) -> None:
    quiet = repo.cli("run", "alpha", "--dry-run")
    assert quiet.exit_code == 0, quiet.output
    assert "lock" not in quiet.stderr
    repo.cli("lock")
    assert "orchestr.lock" not in repo.cli("run", "alpha", "--dry-run").stderr
    edit(repo, "contexts/org/a.yaml", "Sign every report.", "Sign nothing.")
    warned = repo.cli("run", "alpha", "--dry-run")
    assert warned.exit_code == 0, warned.output
    warning = [line for line in warned.stderr.splitlines() if "orchestr.lock" in line]
    assert warning == ["warning: orchestr.lock is stale (alpha/draft: prompt changed): review the change, "
                       "then run `orchestr lock`"]
    assert "orchestr.lock" not in repo.cli("run", "beta", "--dry-run").stderr  # beta's steps are current


def test_run_refuses_a_missing_or_stale_lock_when_the_project_requires_one(repo: ProjectDir) -> None:
    (repo.root / "orchestr.yaml").write_text(CONFIG + "lock: required\n")
    refused = repo.cli("run", "gamma")
    assert refused.exit_code == 2 and "lock: required" in refused.stderr and "no orchestr.lock" in refused.stderr
    assert not (repo.root / "out.txt").exists()
    repo.cli("lock")
    ran = repo.cli("run", "gamma")
    assert ran.exit_code == 0, ran.output
    edit(repo, "workflows/alpha.yaml", "You write reports.", "You write long reports.")
    stale = repo.cli("run", "alpha")
    assert stale.exit_code == 2
    assert "orchestr.lock is stale (alpha/draft: prompt changed)" in stale.stderr
    assert repo.cli("run", "gamma").exit_code == 0  # gamma itself is unaffected


def test_lock_required_is_in_the_config_schema_and_rejects_other_values(repo: ProjectDir) -> None:
    (repo.root / "orchestr.yaml").write_text(CONFIG + "lock: always\n")
    result = repo.cli("validate")
    assert result.exit_code == 2
    assert "orchestr.yaml:4:7" in result.stderr and "required" in result.stderr
    schema = json.loads(repo.cli("schema", "config").stdout)
    assert schema["properties"]["lock"]["enum"] == ["optional", "required"]


def test_impact_errors_are_clear_and_exit_2(repo: ProjectDir, tmp_path_factory: pytest.TempPathFactory) -> None:
    unknown = repo.cli("impact", "--base", "no-such-branch")
    assert unknown.exit_code == 2 and "unknown git ref 'no-such-branch'" in unknown.stderr
    elsewhere = ProjectDir(tmp_path_factory.mktemp("plain"))
    elsewhere.write("workflows/w.yaml", GAMMA)
    outside = elsewhere.cli("impact")
    assert outside.exit_code == 2 and "not inside a git repository" in outside.stderr
    edit(repo, "workflows/beta.yaml", "agent: reader", "agent: raeder")
    broken = repo.cli("impact", "--base", "main")
    assert broken.exit_code == 2 and "workflows/beta.yaml:6:12" in broken.stderr and "did you mean 'reader'" in broken.stderr


def test_a_base_that_did_not_compile_is_noted_and_its_steps_count_as_added(repo: ProjectDir) -> None:
    edit(repo, "workflows/beta.yaml", "agent: reader", "agent: raeder")
    git(repo.root, "commit", "-qam", "broken")
    edit(repo, "workflows/beta.yaml", "agent: raeder", "agent: reader")
    found = impact(repo)
    assert [(s["step"], s["change"]) for s in found["steps"]] == [("summarise", "added")]  # type: ignore[union-attr]
    assert any("main:workflows/beta.yaml:6:12" in note for note in found["notes"])  # type: ignore[union-attr]


def test_the_markdown_report_is_ready_for_a_pull_request_comment(repo: ProjectDir) -> None:
    edit(repo, "contexts/org/a.yaml", "Sign every report.", "Sign and date every report.")
    edit(repo, "workflows/alpha.yaml", 'permissions: { write: ["out/a/**"] }', 'permissions: { write: ["out/**"] }')
    result = repo.cli("impact", "--base", "main", "--format", "markdown")
    assert result.exit_code == 0, result.output
    assert result.stdout == snapshot("""\
### orchestr impact: `working tree` against `main`

**1 step changed, permissions widen in 1 step**

Context nodes changed: `org/a`

| step | change | what changed |
| --- | --- | --- |
| `alpha/draft` | changed | prompt, permissions (via context org/a); WIDENS write |

#### `alpha/draft` (changed)

model anthropic:claude-sonnet-4-6 · tools read_file, write_file · context org/a

<details><summary>prompt</summary>

```diff
--- a/alpha/draft (prompt)
+++ b/alpha/draft (prompt)
@@ -12,14 +12,14 @@
 ## org/a: Team A
 \n\
 Rules:
-- Sign every report.
+- Sign and date every report.
 \n\
 ## Variables in effect
 - channel: #ops
 \n\
 ## All rules in force
 1. Be factual.
-2. Sign every report.
+2. Sign and date every report.
 \n\
 </context>
 \n\
```

</details>

<details><summary>permissions</summary>

```diff
--- a/alpha/draft (permissions)
+++ b/alpha/draft (permissions)
@@ -1,6 +1,6 @@
 tools: read_file, write_file
 read: docs/**, out/**
-write: out/a/**
+write: out/**
 commands: (nothing)
 hosts: (nothing)
 tools given: read_file, write_file
```

</details>
""")


def _example_repo(tmp_path: Path) -> ProjectDir:
    from tests.demo_recording import copy_example

    example = ProjectDir(copy_example(tmp_path / "acme"))
    shutil.copyfile(REPO / "orchestr.lock", example.root / "orchestr.lock")
    git(example.root, "init", "-q", "-b", "main")
    git(example.root, "add", ".")
    git(example.root, "commit", "-qm", "example")
    return example


def test_the_pre_commit_hooks_run_real_commands(tmp_path: Path) -> None:
    hooks = yaml.safe_load((REPO / ".pre-commit-hooks.yaml").read_text())
    assert [h["id"] for h in hooks] == ["orchestr-validate", "orchestr-lock-check"]
    example = _example_repo(tmp_path)
    for hook in hooks:
        assert {"id", "name", "entry", "language"} <= hook.keys() and hook["language"] == "python"
        assert hook["pass_filenames"] is False
        program, *args = shlex.split(hook["entry"])
        assert program == "orchestr"
        done = example.cli(*args)
        assert done.exit_code == 0, f"{hook['id']}: {done.output}"
    edit(example, "contexts/acme.yaml", "no marketing language.", "no marketing language, ever.")
    assert example.cli(*shlex.split(hooks[1]["entry"])[1:]).exit_code == 1


def _github_job() -> str:
    text = (REPO / "docs" / "review.md").read_text()
    return text.split("## GitHub Actions", 1)[1].split("```yaml\n", 1)[1].split("\n```", 1)[0] + "\n"


@pytest.mark.skipif(not (VENV_BIN / "check-jsonschema").exists(), reason="check-jsonschema is not installed")
def test_the_github_actions_example_is_a_valid_workflow_whose_commands_work(tmp_path: Path) -> None:
    job = tmp_path / "orchestr-review.yml"
    job.write_text(_github_job())
    checked = subprocess.run([str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                              str(job)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    example = _example_repo(tmp_path)
    steps = yaml.safe_load(job.read_text())["jobs"]["impact"]["steps"]
    commands = [s["run"] for s in steps if str(s.get("run", "")).startswith("orchestr ")]
    assert len(commands) == 3
    for command in commands:
        argv = shlex.split(command.replace("origin/${{ github.base_ref }}", "main").split(">")[0])
        done = example.cli(*argv[1:])
        assert done.exit_code == 0, f"{command}: {done.output}"
    # the triage agent is not given list_files: allowing it in the context widens nothing
    edit(example, "contexts/acme/support/tier1.yaml", "tools: [read_file, write_file]",
         "tools: [read_file, write_file, list_files]")
    assert example.cli(*shlex.split(commands[-1].replace("origin/${{ github.base_ref }}", "main"))[1:]).exit_code == 0
    edit(example, "contexts/acme/support/tier1.yaml", 'write: ["out/triage.json"]',
         'write: ["out/triage.json", "out/support/**"]')
    gate = shlex.split(commands[-1].replace("origin/${{ github.base_ref }}", "main"))
    assert example.cli(*gate[1:]).exit_code == 1
    report = example.cli("impact", "--base", "main", "--format", "markdown").stdout
    assert "`support-triage/triage`" in report and "WIDENS write" in report


def test_a_changed_check_is_listed_with_its_before_and_after(repo: ProjectDir) -> None:
    edit(repo, "workflows/alpha.yaml", "{ file_exists: out/a/report.md }",
         "{ file_contains: { path: out/a/report.md, pattern: Signed } }")
    found = impact(repo)
    assert changed(found) == {"alpha/draft": ["verify"]}
    text = repo.cli("impact", "--base", "main").stdout
    assert '- {"file_exists":"out/a/report.md"}' in text
    assert '+ {"file_contains":{"path":"out/a/report.md","pattern":"Signed"}}' in text
    assert repo.cli("impact", "--base", "main", "--fail-on", "permissions").exit_code == 0
    repo.cli("lock")
    git(repo.root, "stash", "-q")
    assert "alpha/draft: verify changed" in repo.cli("lock", "--check").stderr


def test_impact_output_is_the_same_on_every_run(repo: ProjectDir) -> None:
    edit(repo, "contexts/org.yaml", "The whole company.", "The whole company, everywhere.")
    runs = [repo.cli("impact", "--base", "main", "--format", fmt).stdout for fmt in ("json", "json", "markdown", "markdown")]
    assert runs[0] == runs[1] and runs[2] == runs[3]
    assert changed(json.loads(runs[0])) == {"alpha/draft": ["prompt"], "beta/summarise": ["prompt"]}
