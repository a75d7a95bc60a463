"""Fuzzing `orchestr validate`: whatever is in the files, it exits 0 or 2 and never raises.

Two sources of input: random YAML-ish documents (written as a workflow and as a context node),
and random mutations of a valid project: the repository's example project when it exists, else a
small one defined here. The CLI runs with `catch_exceptions=False`, so a traceback fails the test.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from tests.conftest import REPO

FALLBACK = {
    "orchestr.yaml": "defaults:\n  model: \"anthropic:claude-sonnet-4-6\"\n  retry: { attempts: 2, backoff: 1s }\n",
    "contexts/acme.yaml": (
        "title: Acme\nrules: [Be polite]\nvars: { region: eu }\n"
        "permissions:\n  tools: [read_file, write_file]\n  write: [\"out/**\"]\n"
    ),
    "contexts/acme/support.yaml": "title: Support\nfiles: [docs/policy.md]\npermissions:\n  write: [\"out/support/**\"]\n",
    "workflows/triage.yaml": """\
name: triage
context: acme/support
inputs:
  since: { type: string, default: 1h }
schedule: { cron: "*/15 8-18 * * 1-5", timezone: Europe/Berlin, catchup: latest, deadline: 10m }
agents:
  triager: { instructions: Triage tickets., tools: [read_file, write_file], max_turns: 5 }
steps:
  - id: fetch
    run: ./fetch.sh --since "$SINCE"
    env: { SINCE: "${{ inputs.since }}" }
    timeout: 2m
    verify: [ { file_exists: data/tickets.json } ]
  - id: triage
    needs: [fetch]
    agent: triager
    prompt: "Triage for ${{ vars.region }}"
    retry: { attempts: 3, backoff: 2s }
    verify:
      - json_schema: { path: out/support/triage.json, schema: { type: object } }
      - tool_called: { name: write_file, args: { path: out/support/triage.json } }
  - id: page
    needs: [triage]
    if: ${{ steps.triage.outputs.urgent == 'true' }}
    run: ./page.sh
""",
}

VALUES = ["[]", "{}", "~", "0", "-1", "true", "1.5", "'x'", "[a, b]", "{a: 1}", ".nan", ".inf",
          "2024-01-01", "!!binary aGk=", "*nope", "&a [*a]", '"${{ steps.x.outputs.y }}"', "|\n  text",
          "99999999999999999999d", "Europe", "@daily", "'* * *'", "!!python/object:os.system x", "\"\\x00\""]
KEYS = ["name", "description", "context", "schedule", "cron", "timezone", "catchup", "deadline", "inputs",
        "secrets", "env", "defaults", "model", "retry", "attempts", "backoff", "agents", "tools", "steps",
        "id", "run", "agent", "prompt", "needs", "if", "verify", "file_exists", "expr", "command", "title",
        "rules", "vars", "files", "permissions", "write", "read", "timeout", "output", "schema", "<<"]


def example_sources() -> dict[str, str]:
    """The repository's example project (when someone has written it), else FALLBACK."""
    if not ((REPO / "workflows").is_dir() and (REPO / "contexts").is_dir()):
        return dict(FALLBACK)
    paths = [REPO / "orchestr.yaml", *sorted((REPO / "contexts").rglob("*.y*ml")),
             *sorted((REPO / "workflows").glob("*.y*ml"))]
    return {p.relative_to(REPO).as_posix(): p.read_text() for p in paths if p.is_file()}


SOURCES = example_sources()
FILES = sorted(SOURCES)


def write_project(root: Path, files: dict[str, str]) -> None:
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    # Files that contexts inject must exist, or the tree is invalid and workflows get shape checks only.
    for relative, text in files.items():
        data = yaml.safe_load(text) if relative.startswith("contexts/") else None
        for name in (data or {}).get("files", []) if isinstance(data, dict) else []:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text("placeholder\n")


def validate(root: Path) -> int:
    """`orchestr validate` in `root`; any exception propagates and fails the test."""
    from orchestr.cli import app

    old = Path.cwd()
    os.chdir(root)
    try:
        result = CliRunner(env={"NO_COLOR": "1"}).invoke(app, ["validate"], catch_exceptions=False)
    finally:
        os.chdir(old)
    return result.exit_code


@pytest.fixture(scope="module")
def base() -> Iterator[Path]:
    """One project for the whole module; each example rewrites a file and puts it back."""
    root = Path(tempfile.mkdtemp(prefix="orchestr-fuzz-"))
    write_project(root, SOURCES)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def run_with(base: Path, relative: str, content: str | bytes) -> int:
    path = base / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    original = path.read_bytes() if path.exists() else None
    try:
        path.write_bytes(content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content)
        return validate(base)
    finally:
        if original is None:
            path.unlink()
        else:
            path.write_bytes(original)


FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_the_fuzz_baseline_is_valid(base: Path) -> None:
    assert validate(base) == 0, "the project the mutations start from must be valid"


# --- random documents -------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20),
    st.sampled_from(["${{ steps.a.outputs.x }}", "${{ inputs.x }}", "5m", "a", "b", "anthropic:x", "* * * * *"]),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8))
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=5)),
    max_leaves=25,
)
workflow_like = st.fixed_dictionaries(
    {"steps": st.lists(st.dictionaries(keys, documents, max_size=6), max_size=4)},
    optional={k: documents for k in ("name", "context", "inputs", "agents", "schedule", "defaults", "env")},
)


def dump(value: object) -> str:
    return yaml.safe_dump(value, allow_unicode=True, sort_keys=False)


@FUZZ
@given(doc=st.one_of(documents, workflow_like))
@example(doc={"steps": [{"id": "a", "run": "x", "timeout": 1e400}]})
@example(doc={"steps": [{"id": "a", "run": "x", "timeout": "99999999999999999999d"}]})
@example(doc={"steps": [{"id": "a", "run": "x"}], "schedule": {"cron": "@daily", "timezone": "Europe"}})
def test_random_documents_as_a_workflow(base: Path, doc: object) -> None:
    assert run_with(base, "workflows/fuzzed.yaml", dump(doc)) in (0, 2)


@FUZZ
@given(doc=documents)
def test_random_documents_as_a_context_node(base: Path, doc: object) -> None:
    assert run_with(base, "contexts/acme/fuzzed.yaml", dump(doc)) in (0, 2)


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=100)))
@example(text="a: &x [*x]\n")
@example(text="steps: " + "[" * 400 + "]" * 400)
def test_random_text_as_a_workflow(base: Path, text: str | bytes) -> None:
    assert run_with(base, "workflows/fuzzed.yaml", text) in (0, 2)


# --- plausible workflows: the right keys, wrong combinations ---------------------------------

CONTEXTS = [f.removeprefix("contexts/").rsplit(".", 1)[0] for f in FILES if f.startswith("contexts/")]
ids = st.sampled_from(["a", "b", "c", "d"])
texts = st.one_of(
    st.sampled_from(["echo hi", "plain", "", "a: b"]),
    st.builds("${{{{ {}.{}{} }}}}".format, st.sampled_from(["steps", "inputs", "vars", "env", "secrets", "github"]),
              st.sampled_from(["a", "b", "since", "region", "HOME", "x"]),
              st.sampled_from(["", ".outputs.x", ".output.x", ".status", " == 1", " +", "['k']", ".outputs"])),
)
checks = st.one_of(
    st.builds(lambda k, v: {k: v}, st.sampled_from(["file_exists", "expr", "command", "exit_code", "file_exist"]), texts),
    st.just({"json_schema": {"path": "out/x.json", "schema": {"type": "object"}}}),
    st.just({"tool_called": {"name": "write_file"}}),
)
common = {"needs": st.one_of(ids, st.lists(ids, max_size=3)), "if": texts, "verify": st.lists(checks, max_size=2),
          "env": st.dictionaries(st.sampled_from(["A", "B", "1X"]), texts, max_size=2),
          "retry": st.fixed_dictionaries({"attempts": st.integers(0, 3)}), "timeout": st.sampled_from(["5m", "0s", 3])}
steps = st.one_of(
    st.fixed_dictionaries({"id": ids, "run": texts}, optional=common),
    st.fixed_dictionaries({"id": ids, "agent": st.sampled_from(["bot", "bot", "ghost"]), "prompt": texts},
                          optional={**common, "context": st.sampled_from([*CONTEXTS, "nope"])}),
)
plausible = st.fixed_dictionaries(
    {"steps": st.lists(steps, min_size=1, max_size=5)},
    optional={
        "context": st.sampled_from([*CONTEXTS, "nope", ""]),
        "inputs": st.just({"since": {"type": "string", "default": "1h"}}),
        "agents": st.fixed_dictionaries({"bot": st.fixed_dictionaries({}, optional={
            "model": st.sampled_from(["anthropic:claude-sonnet-4-6", "claude", "ollama:llama3", "nope:x"]),
            "tools": st.lists(st.sampled_from(["read_file", "write_file", "run_command", "time.now", "shell"]), max_size=3),
            "context": st.sampled_from([*CONTEXTS, "nope"])})}),
        "schedule": st.fixed_dictionaries({"cron": st.sampled_from(["@daily", "* * *", "61 * * * *", "*/5 * * * *"])},
                                          optional={"timezone": st.sampled_from(["UTC", "Europe", "Mars/Base", ""])}),
        "defaults": st.just({"model": "openai:gpt-4.1"}),
    },
)


@FUZZ
@given(doc=plausible)
def test_plausible_workflows(base: Path, doc: object) -> None:
    assert run_with(base, "workflows/fuzzed.yaml", dump(doc)) in (0, 2)


# --- mutations of a valid project ------------------------------------------------------------

@st.composite
def mutations(draw: st.DrawFn) -> tuple[str, str]:
    relative = draw(st.sampled_from(FILES))
    lines = SOURCES[relative].splitlines(keepends=True) or ["\n"]
    i = draw(st.integers(0, len(lines) - 1))
    j = draw(st.integers(0, len(lines) - 1))
    kind = draw(st.sampled_from(["delete", "retype", "duplicate", "tab", "truncate", "swap", "insert"]))
    if kind == "delete":
        del lines[i]
    elif kind == "retype":
        head, colon, _ = lines[i].partition(": ")
        lines[i] = f"{head}{colon or ': '}{draw(st.sampled_from(VALUES))}\n"
    elif kind == "duplicate":
        lines.insert(i, lines[i])
    elif kind == "tab":
        at = draw(st.integers(0, len(lines[i])))
        lines[i] = lines[i][:at] + "\t" + lines[i][at:]
    elif kind == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "insert":
        lines.insert(i, draw(st.sampled_from([*VALUES, "- ", "? ", "---\n", "key: value\n", "  - id: x\n"])))
    text = "".join(lines)
    if kind == "truncate":
        text = text[: draw(st.integers(0, len(text)))]
    return relative, text


@settings(FUZZ, max_examples=400)
@given(mutation=mutations())
def test_mutations_of_a_valid_project(base: Path, mutation: tuple[str, str]) -> None:
    relative, text = mutation
    assert run_with(base, relative, text) in (0, 2)
