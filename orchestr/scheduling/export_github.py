"""A GitHub Actions workflow that runs `orchestr tick --wait` when the schedules need it.

Pure text builders: the caller reads the repository's files and passes their text in.
"""

from __future__ import annotations

import json
import math
import re
import shlex
import tomllib
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from orchestr import __version__
from orchestr.models import AgentStep, ProjectConfig, WorkflowSpec, format_duration
from orchestr.providers import BUILTIN
from orchestr.scheduling.export import HEADER, Exported, Scheduled, listing
from orchestr.scheduling.policy import ON_TIME
from orchestr.scheduling.utc_triggers import utc_crons

JOB_LIMIT_MINUTES = 360  # GitHub-hosted runners stop a job after 6 hours
NAMES_ORCHESTR = re.compile(r"^\s*orchestr\s*(\[[^\]]*\])?\s*([<>=!~;@ ]|$)", re.IGNORECASE)


def install_command(files: Mapping[str, str]) -> str:
    """How the repository pins orchestr: a requirements file or pyproject.toml naming it, else this version.

    `files` maps a file's name at the repository root to its text (requirements*.txt, pyproject.toml).
    """
    for name in sorted(n for n in files if re.fullmatch(r"requirements[\w.-]*\.txt", n)):
        if any(NAMES_ORCHESTR.match(line) for line in files[name].splitlines()):
            return f"python -m pip install -r {shlex.quote(name)}"
    if "pyproject.toml" in files:
        found = _pyproject_install(files["pyproject.toml"])
        if found is not None:
            return found
    return f'python -m pip install "orchestr=={__version__}"'


def _pyproject_install(text: str) -> str | None:
    try:
        project = tomllib.loads(text).get("project", {})
    except tomllib.TOMLDecodeError:
        return None
    if not isinstance(project, dict):
        return None
    if str(project.get("name", "")).lower() == "orchestr" or _names_orchestr(project.get("dependencies")):
        return "python -m pip install ."
    extras = project.get("optional-dependencies", {})
    for extra, deps in sorted(extras.items() if isinstance(extras, dict) else []):
        if _names_orchestr(deps):
            return f'python -m pip install ".[{extra}]"'
    return None


def _names_orchestr(requirements: object) -> bool:
    return isinstance(requirements, list) and any(isinstance(r, str) and NAMES_ORCHESTR.match(r) for r in requirements)


def _models(spec: WorkflowSpec, config: ProjectConfig) -> set[str]:
    found = set()
    for step in spec.steps:
        if isinstance(step, AgentStep) and step.agent in spec.agents:
            model = spec.agents[step.agent].model or spec.defaults.model or config.defaults.model
            if model is not None:
                found.add(model)
    return found


def declared_secrets(config: ProjectConfig, workflows: Sequence[WorkflowSpec]) -> list[str]:
    """Every variable a scheduled run may need: declared secrets, provider keys, MCP env_from."""
    names = {*config.secrets, *(n for server in config.mcp_servers.values() for n in server.env_from)}
    names.update(p.api_key_env for p in config.providers.values() if p.api_key_env)
    for spec in workflows:
        names.update(spec.secrets)
        for model in _models(spec, config):
            provider = model.partition(":")[0]
            if provider in BUILTIN:
                names.add(BUILTIN[provider][1])
    return sorted(names)


def github_warnings(pairs: Scheduled) -> list[str]:
    found = [f"{name}: catchup: none on GitHub Actions: scheduled events often start more than "
             f"{format_duration(ON_TIME)} late, and then the slot is skipped; use catchup: latest"
             for name, schedule in pairs if schedule.catchup == "none"]
    found += [f"{name}: deadline {format_duration(schedule.deadline)} is longer than a GitHub-hosted job may run "
              f"({JOB_LIMIT_MINUTES // 60}h): the job is cancelled first"
              for name, schedule in pairs if schedule.deadline and schedule.deadline > timedelta(minutes=JOB_LIMIT_MINUTES)]
    return found


def job_timeout_minutes(pairs: Scheduled) -> int:
    """Long enough for the longest deadline (plus setup and saving), else GitHub's own limit."""
    deadlines = [schedule.deadline for _, schedule in pairs]
    if not deadlines or any(d is None for d in deadlines):
        return JOB_LIMIT_MINUTES
    longest = max(d for d in deadlines if d is not None)
    return min(JOB_LIMIT_MINUTES, max(30, math.ceil(longest.total_seconds() / 60) + 15))


def _on(crons: Sequence[str]) -> list[str]:
    lines = ["on:"]
    if crons:
        lines += ["  schedule:", *(f'    - cron: "{cron}"' for cron in crons)]
    return [*lines, "  workflow_dispatch: {}"]


def _working_directory(project_dir: str) -> list[str]:
    if project_dir in ("", "."):
        return []
    return ["    defaults:", "      run:", f"        working-directory: {json.dumps(project_dir)}"]


def github_actions(pairs: Scheduled, *, install: str, secrets: Sequence[str], state_dir: str,
                   start: datetime, project_dir: str = ".") -> Exported:
    """Wakes (UTC) derived from the schedules; state in the Actions cache; logs and records as artifacts.

    `state_dir` is the state folder relative to the repository root (where the cache and artifact
    actions resolve paths); `project_dir` the project's folder, where orchestr runs.
    """
    warnings = github_warnings(pairs)
    text = "\n".join([
        HEADER, listing(pairs),
        "# GitHub runs `on.schedule` in UTC, so each workflow's cron and zone become the UTC times its",
        "# slots fall on (daylight saving time included; re-export once a year or after a zone change).",
        "# Secrets: add each one under Settings > Secrets and variables > Actions. The ledger lives in the",
        "# Actions cache, which GitHub evicts after 7 days unread; the artifacts keep the run history.",
        *(f"# WARNING: {w}" for w in warnings),
        "name: orchestr tick", *_on(utc_crons([s for _, s in pairs], start=start)),
        "concurrency:", "  group: orchestr-tick", "  cancel-in-progress: false",
        "permissions:", "  contents: read",
        "jobs:", "  tick:", "    runs-on: ubuntu-latest", f"    timeout-minutes: {job_timeout_minutes(pairs)}",
        *_working_directory(project_dir), "    steps:", *_steps(install=install, secrets=secrets, state_dir=state_dir),
        "",
    ])
    return Exported({"orchestr-tick.yml": text}, tuple(warnings))


def _steps(*, install: str, secrets: Sequence[str], state_dir: str) -> list[str]:
    q = json.dumps  # YAML accepts JSON strings: safe quoting for any value
    env = [f"          {name}: ${{{{ secrets.{name} }}}}" for name in secrets]
    key = "orchestr-state-${{ github.run_id }}-${{ github.run_attempt }}"
    return [
        "      - uses: actions/checkout@v4",
        "      - uses: actions/setup-python@v5", "        with:", '          python-version: "3.12"',
        "      - name: Restore the schedule ledger and run records", "        uses: actions/cache/restore@v4",
        "        with:", f"          path: {q(state_dir)}", f"          key: {key}", "          restore-keys: orchestr-state-",
        "      - name: Install orchestr", f"        run: {q(install)}",
        "      - name: Tick", "        run: orchestr tick --wait", *(["        env:", *env] if env else []),
        "      - name: Save the ledger and run records", "        if: always()", "        uses: actions/cache/save@v4",
        "        with:", f"          path: {q(state_dir)}", f"          key: {key}",
        "      - name: Upload the runs' logs and records", "        if: always()",
        "        uses: actions/upload-artifact@v4", "        with:",
        "          name: orchestr-runs-${{ github.run_id }}-${{ github.run_attempt }}",
        "          path: |", *(f"            {state_dir}/{part}" for part in ("logs", "runs", "state.db")),
        "          if-no-files-found: ignore", "          retention-days: 14",
        "      - name: Health (fails the job, and GitHub notifies, when a schedule is unhealthy)",
        "        if: always()", f"        run: orchestr status --grace {q(format_duration(ON_TIME * 3))}",
    ]
