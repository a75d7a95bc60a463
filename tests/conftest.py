"""Shared fixtures: a throw-away project folder and the CLI driven through Typer's CliRunner."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
# Tests see the plain trace even inside GitHub Actions (whose markup a test asks for explicitly).
QUIET_CI = {"GITHUB_ACTIONS": ""}


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


class ProjectDir:
    """A temporary orchestr project: write files, run the CLI in it."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def cli(self, *args: str, env: dict[str, str] | None = None) -> Result:
        from orchestr.cli import app

        runner = CliRunner(env={"NO_COLOR": "1", "COLUMNS": "200", **QUIET_CI, **(env or {})})
        old = Path.cwd()
        os.chdir(self.root)
        try:
            result = runner.invoke(app, list(args), catch_exceptions=False)
        finally:
            os.chdir(old)
        return Result(result.exit_code, result.stdout, result.stderr)

    def spawn(self, *args: str, env: dict[str, str] | None = None, **kwargs: object) -> subprocess.Popen[str]:
        """The real `orchestr` process (for signals, locks and crashes)."""
        full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **QUIET_CI, **(env or {})}
        return subprocess.Popen([sys.executable, "-m", "orchestr", *args], cwd=self.root, env=full_env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)  # type: ignore[call-overload]

    def run(self, *args: str, env: dict[str, str] | None = None, timeout: float = 60) -> Result:
        proc = self.spawn(*args, env=env)
        out, err = proc.communicate(timeout=timeout)
        return Result(proc.returncode, out, err)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[ProjectDir]:
    yield ProjectDir(tmp_path)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[str]:
    """A real PostgreSQL server for the session. Skipped only where it cannot exist; never in CI."""
    from tests.pgserver import cluster, find_bin_dir

    bin_dir, why = find_bin_dir()
    if bin_dir is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the PostgreSQL tests: {why}")
        pytest.skip(why)
    with cluster(bin_dir) as url:
        yield url


_DATABASES = iter(range(1, 1_000_000))


@pytest.fixture
def postgres_url(postgres_server: str) -> str:
    """A fresh, empty database on the session's server."""
    from tests.pgserver import fresh_database

    return fresh_database(postgres_server, f"t{os.getpid()}_{next(_DATABASES)}")


# CI installs every real part the tests use (.ci/run: cron, systemd-analyze, bubblewrap,
# PostgreSQL, npm tools): there, a skip means a missing install step, so it fails the run.
SKIPS_ALLOWED_IN_CI = ("root ignores file permissions", "root writes through read-only modes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr)
        if not any(allowed in reason for allowed in SKIPS_ALLOWED_IN_CI):
            report.outcome = "failed"
            report.longrepr = f"skipped in CI, where every real part must be installed: {reason}"
