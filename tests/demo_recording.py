"""The model exchange that `make demo` replays: recordings/support-triage.jsonl, and how to remake it.

    python -m tests.demo_recording      # rewrites recordings/support-triage.jsonl

It copies the example project to a temporary folder, starts the local Anthropic wire-protocol
server (tests/fakeapi.py) with the scripted triage conversation below, and runs
`orchestr run support-triage --record` there: the official SDK talks real HTTP, and the tools,
files and verification run for real; only the model's answers are scripted. Run it again after
changing anything the triage agent sees (its workflow, its context chain and files, the ticket
fixture, the fetch script): replay matches requests by a hash of the whole request, and
tests/test_examples.py fails until the committed recording matches the examples again.

The scripted answers must stay consistent with the fixture (data/support/helpdesk-export.json),
or the run's own checks (scripts/check_triage.py) fail the recording.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.fakeapi import FakeLLMServer, Reply, ToolCall

REPO = Path(__file__).resolve().parents[1]
WORKFLOW = "support-triage"
RECORDING = Path("recordings/support-triage.jsonl")
# Everything the example project is made of (out/ and .orchestr/ are what runs produce).
EXAMPLE_PATHS = ("orchestr.yaml", "contexts", "workflows", "scripts", "data", "schemas", "knowledge", "recordings")

TRIAGE = {
    "source": "out/support/tickets.json",
    "tickets": [
        {"id": "T-48214", "severity": "sev3", "queue": "refunds", "urgent": False,
         "summary": "Starter customer charged twice (2 x 189.00 EUR) for invoice INV-2025-0219.",
         "next_action": "Ask billing to confirm the duplicate payment, then refund it in full (refund policy, section 1)."},
        {"id": "T-48215", "severity": "sev3", "queue": "tier2", "urgent": False,
         "summary": "Snapshot restore of db-staging-2 fails with 'volume busy'; production is not affected.",
         "next_action": "Support engineer to look for a stuck attachment on the target volume before Thursday's test."},
        {"id": "T-48217", "severity": "sev4", "queue": "sales", "urgent": False,
         "summary": "Request for a quote for 40 dedicated GPU servers in nyc-1 on a 12-month commitment.",
         "next_action": "Hand over to sales for a quote; support does not quote prices."},
        {"id": "T-48213", "severity": "sev1", "queue": "tier2", "urgent": True,
         "summary": "Business customer: all 14 VMs in fra-2 unreachable since about 10:05 CET, warehouse down; status page green.",
         "next_action": "Page on-call to check fra-2 networking now; the on-call SRE decides whether to declare an incident."},
        {"id": "T-48216", "severity": "sev1", "queue": "security", "urgent": True,
         "summary": "Enterprise customer: two admin sign-ins that passed MFA from a country with no staff; suspected compromise.",
         "next_action": "Page on-call security to review and revoke the sessions with the customer and rotate credentials."},
        {"id": "T-48218", "severity": "sev4", "queue": "tier1", "urgent": False,
         "summary": "How to rotate the API key a departed developer used without breaking the deploy pipeline.",
         "next_action": "Reply with the key-rotation guide: create a second key, switch the pipeline, revoke the old key."},
    ],
}
ANSWER = {
    "urgent": True,
    "urgent_tickets": ["T-48213", "T-48216"],
    "summary": "6 tickets triaged: 2 sev1 (fra-2 outage, suspected admin account compromise), 2 sev3, 2 sev4.",
}


def scripted_conversation() -> list[Reply]:
    """The model's side of the triage, turn by turn. Fixed tool-call ids keep recordings identical."""
    return [
        Reply.tool_calls(ToolCall("read_file", {"path": "out/support/tickets.json"}, id="toolu_demo_01"),
                         text="I'll read the new tickets first."),
        Reply.tool_calls(ToolCall("write_file", {"path": "out/triage.json", "content": json.dumps(TRIAGE, indent=2) + "\n"},
                                  id="toolu_demo_02"),
                         text="Six tickets. Two are sev1: T-48213 (every VM in fra-2 unreachable) and T-48216 "
                              "(admin sign-ins that passed MFA from an unknown country). Writing out/triage.json."),
        Reply.json(ANSWER),
    ]


def copy_example(dest: Path) -> Path:
    """A copy of the example project at `dest`, without anything a run left behind."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in EXAMPLE_PATHS:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            shutil.copy2(source, dest / name)
    return dest


def orchestr_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTR_")}
    return {**env, "NO_COLOR": "1", "COLUMNS": "160", **(extra or {})}


def orchestr(project: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestr", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def record(project: Path, recording: Path) -> subprocess.CompletedProcess[str]:
    """Run the triage in `project` against the scripted server, recording every model exchange."""
    with FakeLLMServer() as server:
        server.anthropic.enqueue(*scripted_conversation())
        done = orchestr(project, "run", WORKFLOW, "--record", str(recording.resolve()),
                        env=orchestr_env(server.env()))
        unused = server.anthropic.pending
    if done.returncode == 0 and unused:
        done.returncode = 1
        done.stderr += f"\n{unused} scripted replies were never asked for: the conversation no longer fits\n"
    return done


def request_keys(recording: Path) -> list[str]:
    return [json.loads(line)["key"] for line in recording.read_text(encoding="utf-8").splitlines() if line.strip()]


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="orchestr-demo-") as tmp:
        project = copy_example(Path(tmp) / "acme")
        fresh = project / RECORDING
        done = record(project, fresh)
        if done.returncode != 0:
            print(done.stdout + done.stderr, file=sys.stderr)
            print(f"recording failed (exit {done.returncode}); {RECORDING} is unchanged", file=sys.stderr)
            return 1
        target = REPO / RECORDING
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(fresh, target)
    print(f"wrote {RECORDING} ({len(request_keys(target))} model exchanges)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
