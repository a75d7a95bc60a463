"""`orchestr schedule export`, checked with the real validators where this machine has them."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ProjectDir

VENV_BIN = Path(sys.executable).parent


@pytest.fixture
def scheduled(project: ProjectDir) -> ProjectDir:
    project.write("workflows/triage.yaml", """
        name: support-triage
        schedule: { cron: "*/15 8-18 * * 1-5", timezone: Europe/Berlin, catchup: latest, deadline: 10m }
        steps: [ { id: work, run: "true" } ]
    """)
    project.write("workflows/report.yaml", """
        name: Pipeline_Report
        schedule: { cron: "@daily", timezone: America/New_York, catchup: none }
        steps: [ { id: work, run: "true" } ]
    """)
    project.write("workflows/adhoc.yaml", "steps: [ { id: work, run: 'true' } ]\n")
    return project


def _export(project: ProjectDir, kind: str, *extra: str) -> str:
    result = project.cli("schedule", "export", "--format", kind, *extra)
    assert result.exit_code == 0, result.output
    return result.stdout


def test_crontab_is_one_tick_line_per_minute(scheduled: ProjectDir) -> None:
    text = _export(scheduled, "crontab", "--executable", "/srv/ops/.venv/bin/orchestr")
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert lines == [f"* * * * * cd {scheduled.root} && /srv/ops/.venv/bin/orchestr tick >> .orchestr/tick.log 2>&1"]
    assert "#   support-triage: */15 8-18 * * 1-5 (Europe/Berlin), catchup latest, overlap skip" in text
    assert "adhoc" not in text


def _systemd_verify(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["systemd-analyze", "verify", "--man=no", "orchestr-tick.service", "orchestr-tick.timer"],
                          cwd=folder, capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here")
def test_systemd_units_pass_systemd_analyze_verify(scheduled: ProjectDir, tmp_path: Path) -> None:
    out = tmp_path / "units"
    result = scheduled.cli("schedule", "export", "--format", "systemd", "--output", str(out))
    assert result.exit_code == 0, result.output
    timer = (out / "orchestr-tick.timer").read_text()
    assert "Persistent=true" in timer and "OnCalendar=*-*-* *:*:00" in timer
    service = (out / "orchestr-tick.service").read_text()
    assert f"WorkingDirectory={scheduled.root}" in service and "ExecStart=" in service
    verified = _systemd_verify(out)
    assert verified.returncode == 0, verified.stderr
    # The validator is real: a unit with a relative ExecStart is refused.
    (out / "orchestr-tick.service").write_text(service.replace("ExecStart=/", "ExecStart="))
    assert _systemd_verify(out).returncode != 0


def _cronjobs(project: ProjectDir) -> list[dict[str, object]]:
    text = _export(project, "kubernetes", "--image", "ghcr.io/acme/ops:1.4")
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_kubernetes_cronjobs_pass_the_kubernetes_schema(scheduled: ProjectDir) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    docs = _cronjobs(scheduled)
    assert [d["metadata"]["name"] for d in docs] == ["orchestr-pipeline-report", "orchestr-support-triage"]  # type: ignore[index]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    report, triage = (d["spec"] for d in docs)
    assert (triage["schedule"], triage["timeZone"], triage["concurrencyPolicy"]) == (  # type: ignore[index]
        "*/15 8-18 * * 1-5", "Europe/Berlin", "Forbid")
    assert triage["startingDeadlineSeconds"] == 86400 and report["startingDeadlineSeconds"] == 300  # type: ignore[index]
    job = triage["jobTemplate"]["spec"]  # type: ignore[index]
    assert job["activeDeadlineSeconds"] == 600 and job["backoffLimit"] == 0
    container = job["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/acme/ops:1.4"
    assert container["command"] == ["orchestr", "run", "support-triage", "--trigger", "schedule"]
    broken = {**docs[0], "spec": {**docs[0]["spec"], "concurrencyPolicy": 7}}  # type: ignore[dict-item]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)


def _check_github_workflow(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(VENV_BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(not (VENV_BIN / "check-jsonschema").exists(), reason="check-jsonschema is not installed")
def test_github_actions_workflow_passes_the_github_workflow_schema(scheduled: ProjectDir, tmp_path: Path) -> None:
    text = _export(scheduled, "github-actions")
    workflow = yaml.safe_load(text)
    assert workflow["concurrency"] == {"group": "orchestr-tick", "cancel-in-progress": False}
    steps = workflow["jobs"]["tick"]["steps"]
    assert any(s.get("run") == "orchestr tick --wait" for s in steps)
    path = tmp_path / "orchestr-tick.yml"
    path.write_text(text)
    checked = _check_github_workflow(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    path.write_text(text.replace("runs-on: ubuntu-latest", "runs-on: {nope: [1]}").replace("steps:", "stepz:"))
    assert _check_github_workflow(path).returncode != 0


def test_export_with_no_schedules_says_so(project: ProjectDir) -> None:
    project.write("workflows/adhoc.yaml", "steps: [ { id: work, run: 'true' } ]\n")
    assert "# No workflow has a schedule yet." in _export(project, "crontab")
