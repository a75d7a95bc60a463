"""Shell completion (bash, zsh, fish) and help text a newcomer can read."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ProjectDir

BIN = Path(sys.executable).parent
COMMANDS = ["", "init", "validate", "plan", "run", "runs", "runs show", "runs list", "tick", "status", "schema",
            "impact", "lock", "completion", "context show", "context tree", "schedule list", "schedule export"]


def _complete(project: ProjectDir, shell: str, words: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "_ORCHESTR_COMPLETE": f"complete_{shell}", "_TYPER_COMPLETE_ARGS": words, **extra}
    if shell == "bash":
        env.update(COMP_WORDS=words, COMP_CWORD=str(len(words.split(" ")) - 1))
    return subprocess.run([sys.executable, str(BIN / "orchestr")], cwd=project.root, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.fixture
def two_runs(project: ProjectDir) -> tuple[ProjectDir, list[str]]:
    project.cli("init")
    project.write("workflows/other.yaml", "name: nightly-report\nsteps: [{id: a, run: 'true'}]\n")
    ids = []
    for _ in range(2):
        ran = project.cli("run", "hello")
        assert ran.exit_code == 0, ran.output
        ids.append(re.search(r"run (\d{8}-\d{6}-[0-9a-f]{6})", ran.stdout).group(1))  # type: ignore[union-attr]
    return project, ids


def test_bash_completes_workflow_names_and_run_ids_in_a_real_bash(two_runs: tuple[ProjectDir, list[str]]) -> None:
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    project, ids = two_runs
    script = project.cli("completion", "bash")
    assert script.exit_code == 0 and "_ORCHESTR_COMPLETE" in script.stdout
    (project.root / "complete.bash").write_text(script.stdout)

    def tab(*words: str) -> list[str]:
        line = ("source complete.bash; COMP_WORDS=(" + " ".join(f"'{w}'" for w in words)
                + f"); COMP_CWORD={len(words) - 1}; _orchestr_completion orchestr; printf '%s\\n' \"${{COMPREPLY[@]}}\"")
        done = subprocess.run([bash, "-c", line], cwd=project.root, capture_output=True, text=True, timeout=60,
                              env={**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"})
        assert done.returncode == 0, done.stderr
        return done.stdout.split()

    assert tab("orchestr", "run", "") == ["hello", "nightly-report", "summarize"]
    assert tab("orchestr", "plan", "ni") == ["nightly-report"]
    assert tab("orchestr", "runs", "show", "") == ["last", ids[1], ids[0]]
    assert tab("orchestr", "run", "hello", "--resume", ids[0][:-3]) == [ids[0]]


def test_zsh_and_fish_complete_workflows_and_runs(two_runs: tuple[ProjectDir, list[str]]) -> None:
    project, ids = two_runs
    for shell in ("zsh", "fish"):
        script = project.cli("completion", shell)
        assert script.exit_code == 0 and "_ORCHESTR_COMPLETE" in script.stdout, shell
    zsh = _complete(project, "zsh", "orchestr run h")
    assert '"hello"' in zsh.stdout and "summarize" not in zsh.stdout, zsh.stdout + zsh.stderr
    fish = _complete(project, "fish", "orchestr runs show ", _TYPER_COMPLETE_FISH_ACTION="get-args")
    assert fish.stdout.split() == ["last", ids[1], ids[0]], fish.stdout + fish.stderr


def test_completion_reads_the_project_without_importing_provider_sdks(two_runs: tuple[ProjectDir, list[str]]) -> None:
    project, _ = two_runs
    env = {**os.environ, "_ORCHESTR_COMPLETE": "complete_zsh", "_TYPER_COMPLETE_ARGS": "orchestr run "}
    done = subprocess.run([sys.executable, "-X", "importtime", str(BIN / "orchestr")], cwd=project.root, env=env,
                          capture_output=True, text=True, timeout=60)
    assert '"hello"' in done.stdout
    imported = {line.rsplit("|", 1)[-1].strip().split(".")[0] for line in done.stderr.splitlines() if "|" in line}
    assert "orchestr" in imported
    assert not imported & {"anthropic", "openai", "mcp", "jinja2", "httpx"}, sorted(imported)


def test_completion_never_creates_the_state_store(project: ProjectDir) -> None:
    project.cli("init")
    done = _complete(project, "zsh", "orchestr runs show ")
    assert '"last"' in done.stdout
    assert not (project.root / ".orchestr").exists()


def test_completion_of_an_unknown_shell_is_a_usage_error(project: ProjectDir) -> None:
    result = project.cli("completion", "tcsh")
    assert result.exit_code == 2
    assert "bash" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("command", COMMANDS)
def test_help_names_values_plainly(command: str, project: ProjectDir) -> None:
    result = project.cli(*command.split(), "--help")
    assert result.exit_code == 0, result.output
    assert not re.search(r"<[a-z][^>]*>", result.stdout), result.stdout  # <str>, <list[str]>, <path>
    assert not re.search(r"\{[A-Za-z_]+\}", result.stdout), result.stdout  # {WORKFLOW}


def test_run_help_shows_what_each_value_is(project: ProjectDir) -> None:
    shown = project.cli("run", "--help").stdout
    assert "Usage: orchestr run [OPTIONS] WORKFLOW" in shown
    for option in ("-i, --input KEY=VALUE", "--resume RUN", "--events FILE", "--allow KEY:VALUE"):
        assert option in shown, option


@pytest.mark.parametrize("args", [("schema", "bogus"), ("completion", "tcsh"), ("runs", "--format", "xml"),
                                  ("plan", "x", "--format", "svg")])
def test_a_bad_value_is_reported_without_pydantics_prefix(args: tuple[str, ...], project: ProjectDir) -> None:
    result = project.cli(*args)
    assert result.exit_code == 2
    assert "is not one of" in result.stderr
    assert "Value error" not in result.output


def test_every_run_option_and_command_is_documented(project: ProjectDir) -> None:
    from tests.conftest import REPO

    readme = (REPO / "README.md").read_text()
    shown = project.cli("run", "--help").stdout
    options = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]+)", shown)) - {"--help"}
    assert {"--dry-run", "--junit", "--quiet", "--verbose"} <= options
    missing = sorted(o for o in options if o not in readme)
    assert not missing, f"README.md does not document {missing}"
    for short in ("-q/--quiet", "-v/--verbose", "orchestr init", "orchestr completion", "schema --path", ".env"):
        assert short in readme, short
