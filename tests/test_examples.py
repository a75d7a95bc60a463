"""The example project at the repo root (Acme Cloud: support, sales, HR) and the offline `make demo`.

Every test works on a copy of the example in tmp_path, so nothing is ever written into the repo.
"""

from __future__ import annotations

import itertools
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from tests.conftest import REPO, ProjectDir
from tests.demo_recording import (
    RECORDING,
    WORKFLOW,
    copy_example,
    orchestr,
    orchestr_env,
    record,
    request_keys,
)
from tests.fakeapi import FakeLLMServer, ReceivedRequest, Reply, ToolCall

WORKFLOWS = ("hello", "onboarding", "pipeline-report", "support-refunds", "support-triage")
SCHEMA_LINE = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")
# No key and nowhere to connect to: a replay that tried the network would fail loudly.
OFFLINE = {"ANTHROPIC_API_KEY": "", "OPENAI_API_KEY": "", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
           "OPENAI_BASE_URL": "http://127.0.0.1:9"}


@pytest.fixture
def example(tmp_path: Path) -> ProjectDir:
    return ProjectDir(copy_example(tmp_path / "acme"))


def _events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _path_arg(event: dict[str, object]) -> object:
    args = event["args"]
    return args.get("path") if isinstance(args, dict) else None


def _makefile_demo_commands() -> list[list[str]]:
    """The `demo` target's recipe, as argv lists for the orchestr it calls."""
    lines = (REPO / "Makefile").read_text().split("\ndemo:", 1)[1].splitlines()[1:]
    recipe = [line.strip().lstrip("@") for line in itertools.takewhile(lambda line: line.startswith("\t"), lines)]
    assert recipe and all(line.startswith("$(VENV)/bin/orchestr ") for line in recipe), recipe
    return [shlex.split(line)[1:] for line in recipe]


def test_every_example_validates(example: ProjectDir) -> None:
    result = example.cli("validate")
    assert result.exit_code == 0, result.output
    assert all(name in result.output for name in WORKFLOWS)
    tree = json.loads(example.cli("context", "tree", "--format", "json").stdout)
    domains = {child["id"] for child in tree[0]["children"]}
    assert {"acme/support", "acme/sales", "acme/hr"} <= domains
    assert any(grandchild for child in tree[0]["children"] for grandchild in child["children"])


def test_every_example_file_points_at_its_json_schema() -> None:
    files = {REPO / "orchestr.yaml": "config", **{p: "workflow" for p in (REPO / "workflows").glob("*.yaml")},
             **{p: "context" for p in (REPO / "contexts").rglob("*.yaml")}}
    for path, kind in files.items():
        match = SCHEMA_LINE.match(path.read_text().splitlines()[0])
        assert match, f"{path.relative_to(REPO)} does not start with a yaml-language-server $schema line"
        target = (path.parent / match.group(1)).resolve()
        assert target == REPO / "docs" / "schema" / f"{kind}.schema.json", path.relative_to(REPO)


def test_a_tier1_agent_gets_its_whole_chain_and_narrowed_permissions(example: ProjectDir) -> None:
    shown = example.cli("context", "show", "acme/support/tier1", "--format", "json")
    assert shown.exit_code == 0, shown.output
    text = example.cli("context", "show", "acme/support/tier1", "--text").stdout
    for rule in ("Never share one customer's data", "Never promise a fix time", "Triage every ticket you are given"):
        assert rule in text
    assert '<file path="knowledge/support/severity-matrix.md">' in text
    assert "- escalation_channel: #support-urgent" in text  # the support team's value, not the company's
    plan = json.loads(example.cli("plan", "support-triage", "--format", "json").stdout)
    triage = next(step for step in plan["steps"] if step["id"] == "triage")
    assert triage["context"] == "acme/support/tier1"
    assert triage["permissions"]["write"] == ["out/triage.json"]


def test_hello_runs_in_a_second(example: ProjectDir) -> None:
    result = example.cli("run", "hello", "--events", "ev.jsonl")
    assert result.exit_code == 0, result.output
    assert (example.root / "out/hello.txt").read_text() == "Hello, world!\n"
    finished = {e["step"]: e["status"] for e in _events(example.root / "ev.jsonl") if e["event"] == "step.finished"}
    assert finished == {"greet": "succeeded", "save": "succeeded", "shout": "skipped"}
    loud = example.cli("run", "hello", "-i", "who=Acme", "-i", "loud=true", "--verbose")
    assert loud.exit_code == 0, loud.output
    assert "HELLO, ACME!" in loud.stdout


def test_the_demo_replays_offline_with_real_tools_and_checks(example: ProjectDir) -> None:
    result = example.cli("run", WORKFLOW, "--replay", str(RECORDING), "--events", "ev.jsonl", env=OFFLINE)
    assert result.exit_code == 0, result.output
    events = _events(example.root / "ev.jsonl")
    tools = [(e["tool"], _path_arg(e), e["outcome"]) for e in events if e["event"] == "tool.call"]
    assert tools == [("read_file", "out/support/tickets.json", "ok"), ("write_file", "out/triage.json", "ok")]
    assert "tool read_file" in result.stdout and "tool write_file" in result.stdout
    checks = [(e["check"], e["passed"]) for e in events if e["event"] == "verify.result" and e["step"] == "triage"]
    assert checks == [("json_schema", True), ("command", True), ("tool_called", True), ("expr", True)]
    finished = {e["step"]: e["status"] for e in events if e["event"] == "step.finished"}
    assert finished == {"fetch": "succeeded", "triage": "succeeded", "page-oncall": "succeeded",
                        "page-triage-failed": "skipped"}
    schema = json.loads((example.root / "schemas/triage.schema.json").read_text())
    triage = json.loads((example.root / "out/triage.json").read_text())
    assert not list(Draft202012Validator(schema).iter_errors(triage))
    assert [t["id"] for t in triage["tickets"] if t["urgent"]] == ["T-48213", "T-48216"]
    page = json.loads((example.root / "out/notifications.jsonl").read_text().splitlines()[-1])
    assert page == {"channel": "#support-urgent", "text": "Urgent support tickets: T-48213, T-48216. Triage: out/triage.json"}


def test_make_demo_commands_pass_twice_in_a_row(example: ProjectDir) -> None:
    """What `make demo` runs, run as a user would: a second demo must not trip over the first's files."""
    commands = _makefile_demo_commands()
    assert ["run", WORKFLOW, "--replay", str(RECORDING)] in commands
    for _ in range(2):
        for argv in commands:
            done = orchestr(example.root, *argv, env=orchestr_env(OFFLINE))
            assert done.returncode == 0, f"orchestr {shlex.join(argv)}:\n{done.stdout}{done.stderr}"
    assert (example.root / "out/triage.json").is_file()


def test_regenerating_the_recording_gives_the_committed_requests(example: ProjectDir) -> None:
    """The committed recording cannot silently drift from the examples: remake it and compare."""
    fresh = example.root / "fresh.jsonl"
    done = record(example.root, fresh)
    assert done.returncode == 0, done.stdout + done.stderr
    assert request_keys(fresh) == request_keys(REPO / RECORDING), (
        f"{RECORDING} no longer matches what the triage agent is sent: remake it with `make demo-recording`")
    replayed = example.cli("run", WORKFLOW, "--replay", "fresh.jsonl", env=OFFLINE)
    assert replayed.exit_code == 0, replayed.output


def test_onboarding_needs_its_inputs_and_writes_a_verified_checklist(example: ProjectDir) -> None:
    checklist = "".join(f"## {section}\n- [ ] an item (people-ops)\n\n"
                        for section in ("Before day 1", "Day 1", "First week", "First 30 days"))
    with FakeLLMServer() as server:
        missing = example.cli("run", "onboarding", "-i", "employee=Zoë Müller", env=server.env())
        assert missing.exit_code == 2 and "missing required input 'role'" in missing.stderr
        server.anthropic.enqueue(Reply.tool_calls(ToolCall("write_file", {"path": "out/hr/onboarding/zoe-muller.md",
                                                                          "content": checklist})),
                                 Reply.text("The checklist is written."))
        result = example.cli("run", "onboarding", "-i", "employee=Zoë Müller", "-i", "role=Support Engineer",
                             "-i", "team=support", "-i", "start_date=2025-04-01", env=server.env())
        prompt = json.dumps(server.anthropic.requests[0].body["messages"])
    assert result.exit_code == 0, result.output
    assert "IT-HELP) by\\n2025-03-18" in prompt  # 10 business days before, computed by the script
    assert "People Operations" in json.dumps(server.anthropic.requests[0].body["system"])


def test_pipeline_report_runs_the_stats_script_and_drafts_followups_in_parallel(example: ProjectDir) -> None:
    def analyst(request: ReceivedRequest) -> Reply:
        messages = request.body["messages"]
        as_of = re.search(r"as of (\d{4}-\d\d-\d\d)", json.dumps(messages))
        assert as_of is not None
        tool_results = sum(1 for m in messages if m["role"] == "tool")
        if tool_results == 0:
            return Reply.tool_calls(ToolCall("run_command", {"argv": ["python3", "scripts/pipeline_stats.py",
                                                                      "out/sales/pipeline.csv", "--as-of", as_of[1]]}))
        if tool_results == 1:
            report = "## Summary\n- open pipeline\n\n## Deals at risk\n- OPP-2103\n"
            return Reply.tool_calls(ToolCall("write_file", {"path": f"out/sales/reports/pipeline-{as_of[1]}.md",
                                                            "content": report}))
        return Reply.text("Report written.")

    def coach(request: ReceivedRequest) -> Reply:
        as_of = re.search(r"exported (\d{4}-\d\d-\d\d)", json.dumps(request.body["messages"][0]))
        assert as_of is not None
        if len(request.body["messages"]) == 1:
            return Reply.tool_calls(ToolCall("write_file", {"path": f"out/sales/reports/followups-{as_of[1]}.md",
                                                            "content": "## OPP-2103\nAsk for the new close date.\n"}))
        return Reply.text("Drafts written.")

    with FakeLLMServer() as server:
        server.openai.responder, server.anthropic.responder = analyst, coach
        result = example.cli("run", "pipeline-report", "--events", "ev.jsonl", env=server.env())
        stats = json.dumps(server.openai.requests[1].body["messages"][-1])
    assert result.exit_code == 0, result.output
    assert "open pipeline: 10 deals, 1,042,000 USD" in stats and "OPP-2103" in stats
    tools = [(e["step"], e["tool"], e["outcome"]) for e in _events(example.root / "ev.jsonl") if e["event"] == "tool.call"]
    assert ("report", "run_command", "ok") in tools and ("followups", "write_file", "ok") in tools
    posted = json.loads((example.root / "out/notifications.jsonl").read_text())
    assert posted["channel"] == "#sales-pipeline" and "## Deals at risk" in posted["text"]


def test_the_committed_lock_matches_the_example_project(example: ProjectDir) -> None:
    shutil.copyfile(REPO / "orchestr.lock", example.root / "orchestr.lock")
    checked = example.cli("lock", "--check")
    assert checked.exit_code == 0, f"{checked.output}\norchestr.lock is stale: run `orchestr lock` at the repo root"
    assert "5 agent steps" in checked.stdout
    assert example.cli("run", "hello").stderr.count("orchestr.lock") == 0
