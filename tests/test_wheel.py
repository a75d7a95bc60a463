"""The installed wheel, not the source tree: it ships the schemas, and `orchestr init` + `run hello` work.

Offline: the wheel is built with the project venv's setuptools (no build isolation, no index) from a
copy of the sources, installed with `--no-index --no-deps` into a fresh venv that sees the project
venv's site-packages for the dependencies (a .pth line: the editable install's own hook is not run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

KINDS = ("workflow", "context", "config")


def _pip(*args: str, cwd: Path | None = None) -> None:
    subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                   cwd=cwd, check=True, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    source = tmp_path_factory.mktemp("source")
    shutil.copytree(REPO / "orchestr", source / "orchestr",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    out = tmp_path_factory.mktemp("dist")
    _pip("wheel", ".", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(out), cwd=source)
    (built,) = out.glob("orchestr-*.whl")
    return built


def test_the_wheel_ships_the_json_schemas(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for kind in KINDS:
            member = f"orchestr/data/schema/{kind}.schema.json"
            assert member in names, sorted(names)
            assert archive.read(member) == (REPO / "docs/schema" / f"{kind}.schema.json").read_bytes()


def test_init_then_run_hello_with_the_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    Path(site, "project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _pip("--python", str(python), "install", "--no-index", "--no-deps", str(wheel))

    orchestr = venv / "bin" / "orchestr"
    env = {**os.environ, "NO_COLOR": "1", "ANTHROPIC_API_KEY": "", "OPENAI_API_KEY": "",
           "PYTHONPATH": ""}
    work = tmp_path / "work"
    work.mkdir()

    def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(orchestr), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)

    located = cli("schema", "workflow", "--path", cwd=work)
    assert located.returncode == 0, located.stderr
    assert Path(located.stdout.strip()).is_relative_to(venv), "orchestr must come from the installed wheel"

    made = cli("init", "proj", cwd=work)
    assert made.returncode == 0, made.stdout + made.stderr
    project = work / "proj"
    assert (project / "schemas/orchestr/workflow.schema.json").read_bytes() == \
        (REPO / "docs/schema/workflow.schema.json").read_bytes()
    ran = cli("run", "hello", cwd=project)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "run succeeded (exit 0)" in ran.stdout
    assert (project / "out/hello.txt").read_text() == "Hello, world!\n"
