"""`orchestr init`: the files of a minimal project that runs at once (`orchestr run hello`).

The project's YAML files point their yaml-language-server `$schema` line at copies of the JSON
Schemas written beside them (`schemas/orchestr/`), so an editor resolves them in any clone, with or
without orchestr installed; `orchestr init --force` refreshes those copies after an upgrade.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from orchestr.errors import UsageError

SCHEMA_KINDS = ("workflow", "context", "config")
SCHEMA_DIR = "schemas/orchestr"


def installed_schema(kind: str) -> Path:
    """The JSON Schema file shipped inside the installed package."""
    if kind not in SCHEMA_KINDS:
        raise UsageError(f"unknown schema '{kind}' (kinds: {', '.join(SCHEMA_KINDS)})")
    return Path(str(resources.files("orchestr").joinpath("data", "schema", f"{kind}.schema.json")))


def _modeline(kind: str, depth: int) -> str:
    return f"# yaml-language-server: $schema={'../' * depth}{SCHEMA_DIR}/{kind}.schema.json\n"


_CONFIG = """\
#
# Project config: providers, MCP servers, defaults, the state folder, secrets.
# Every key: `orchestr schema config`.
state_dir: .orchestr

defaults:
  model: "anthropic:claude-sonnet-4-6"
  timeout: 5m
  retry: { attempts: 2, backoff: 5s, max_backoff: 1m }
"""

_CONTEXT = """\
title: Team
description: |
  The team this project's agents work for. Say here what an agent should always know:
  who you are, what you do, the words you use.
facts:
  - Notes live in notes/ as Markdown files.
rules:
  - Write only under out/.
permissions:          # a ceiling: agents under this node can do no more than this
  tools: [read_file, write_file, list_files]
  read: ["notes/**", "out/**"]
  write: ["out/**"]
"""

_HELLO = """\
#
# A shell-only workflow: no model, no API key.
#   orchestr run hello
#   orchestr run hello -i who=Ada
name: hello
description: Greet someone and keep the greeting
inputs:
  who: { type: string, default: world, description: Who to greet }
steps:
  - id: greet
    run: |
      echo "Hello, $WHO!"
      echo "greeting=Hello, $WHO!" >> "$ORCHESTR_OUTPUT"
    env: { WHO: "${{ inputs.who }}" }
    verify:
      - expr: ${{ steps.greet.outputs.greeting == "Hello, " ~ inputs.who ~ "!" }}

  - id: save
    needs: [greet]
    run: |
      mkdir -p out
      printf '%s\\n' "$GREETING" > out/hello.txt
    env: { GREETING: "${{ steps.greet.outputs.greeting }}" }
    verify:
      - file_contains: { path: out/hello.txt, pattern: "^Hello, .+!$" }
"""

_SUMMARIZE = """\
#
# An agent workflow: needs ANTHROPIC_API_KEY (in the environment or in .env).
#   orchestr run summarize
name: summarize
description: Summarize the notes in notes/ into out/summary.md
context: team
agents:
  writer:
    instructions: |
      You summarize notes for the team: short, factual, in Markdown.
    tools: [list_files, read_file, write_file]
    max_turns: 10
steps:
  - id: summarize
    agent: writer
    prompt: Read every file in notes/ and write a one-page summary to out/summary.md.
    verify:
      - file_exists: out/summary.md
      - tool_called: { name: write_file, args: { path: out/summary.md } }
"""

_NOTE = """\
# Welcome

This project was made by `orchestr init`. Put the notes the `summarize` agent reads here.
"""

_GITIGNORE = """\
# orchestr's run state (run records, schedule ledger, locks)
.orchestr/
# API keys and other secrets read by orchestr; never commit them
.env
"""


@dataclass(frozen=True)
class ScaffoldFile:
    path: str
    text: str


def scaffold_files() -> list[ScaffoldFile]:
    files = [
        ScaffoldFile("orchestr.yaml", _modeline("config", 0) + _CONFIG),
        ScaffoldFile("contexts/team.yaml", _modeline("context", 1) + _CONTEXT),
        ScaffoldFile("workflows/hello.yaml", _modeline("workflow", 1) + _HELLO),
        ScaffoldFile("workflows/summarize.yaml", _modeline("workflow", 1) + _SUMMARIZE),
        ScaffoldFile("notes/welcome.md", _NOTE),
        ScaffoldFile(".gitignore", _GITIGNORE),
    ]
    for kind in SCHEMA_KINDS:
        files.append(ScaffoldFile(f"{SCHEMA_DIR}/{kind}.schema.json", installed_schema(kind).read_text()))
    return files


def write_scaffold(root: Path, *, force: bool) -> list[Path]:
    """Write the project into `root`; refuse (before writing anything) to replace a file unless `force`.

    An existing .gitignore is never replaced: the lines it lacks are appended to it.
    """
    files = scaffold_files()
    existing = [f.path for f in files if f.path != ".gitignore" and (root / f.path).exists()]
    if existing and not force:
        raise UsageError(
            f"{root}: refusing to overwrite {', '.join(existing)}; "
            "pass --force to replace them, or choose an empty folder: orchestr init DIR"
        )
    try:
        return [_write(root / file.path, file.text) for file in files]
    except OSError as exc:
        raise UsageError(f"cannot write the project into {root}: {exc.strerror or exc}") from None


def _write(target: Path, text: str) -> Path:
    if target.is_dir():
        raise UsageError(f"{target}: is a folder where orchestr init writes a file; move it away")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.name == ".gitignore" and target.is_file():
        old = target.read_text()
        missing = [line for line in text.splitlines() if line and line not in old.splitlines()]
        text = old + ("" if old.endswith("\n") or not old else "\n") + "\n".join(missing) + ("\n" if missing else "")
    target.write_text(text)
    return target
