"""Approvals through the CLI: a run stops waiting (exit 4, no process), a person decides, it resumes."""

from __future__ import annotations

import json
from pathlib import Path

from orchestr.lock import WorkflowLock
from orchestr.store import SqliteStore as Store
from tests.conftest import ProjectDir

WORKFLOW = """
name: refunds
{schedule}
steps:
  - id: draft
    run: |
      echo draft >> drafted.txt
      mkdir -p out
      echo '{{"refunds": [{{"id": "T-1", "eur": 20}}, {{"id": "T-2", "eur": 45}}]}}' > out/refunds.json
      echo "count=2" >> "$ORCHESTR_OUTPUT"
  - id: approve-refunds
    needs: [draft]
    approval:
      message: "Apply ${{{{ steps.draft.outputs.count }}}} refunds?"
      show: [out/refunds.json]
      timeout: {timeout}
      notify: echo "$ORCHESTR_APPROVE_COMMAND" >> notified.txt
  - id: apply
    needs: [approve-refunds]
    run: echo "$ORCHESTR_RUN_ID" >> applied.txt
"""


def _project(project: ProjectDir, *, schedule: str = "", timeout: str = "1h") -> ProjectDir:
    project.write("orchestr.yaml", "{}\n")
    project.write("workflows/refunds.yaml", WORKFLOW.format(schedule=schedule, timeout=timeout))
    return project


def _runs(project: ProjectDir) -> list[dict[str, object]]:
    result = project.cli("runs", "--format", "json")
    assert result.exit_code == 0, result.output
    runs: list[dict[str, object]] = json.loads(result.stdout)
    return runs


def _approvals(project: ProjectDir, run: str) -> list[dict[str, object]]:
    result = project.cli("approvals", "show", run, "--format", "json")
    assert result.exit_code == 0, result.output
    records: list[dict[str, object]] = json.loads(result.stdout)
    return records


def _lines(project: ProjectDir, name: str) -> list[str]:
    path = project.root / name
    return path.read_text().splitlines() if path.exists() else []


def _waiting_run(project: ProjectDir) -> str:
    result = project.run("run", "refunds")
    assert result.exit_code == 4, result.output
    runs = _runs(project)
    assert runs[0]["status"] == "waiting"
    return str(runs[0]["id"])


def test_a_run_stops_at_an_approval_with_exit_4_holding_no_process(project: ProjectDir) -> None:
    _project(project)
    run = _waiting_run(project)  # the real process has exited
    assert WorkflowLock(project.root / ".orchestr", "refunds").holder() is None  # no process holds the lock
    assert _lines(project, "notified.txt") == [f"orchestr approve {run} approve-refunds"]
    assert _lines(project, "applied.txt") == []
    [record] = _approvals(project, run)
    assert record["message"] == "Apply 2 refunds?" and record["decision"] is None
    [shown] = record["files"]  # type: ignore[misc]
    assert shown["path"] == "out/refunds.json" and len(shown["sha256"]) == 64 and shown["baseline"] is False
    listed = project.cli("approvals", "list", "--format", "json")
    assert [r["run"] for r in json.loads(listed.stdout)] == [run]
    text = project.cli("approvals", "show", run).stdout
    assert '"eur": 45' in text and "Apply 2 refunds?" in text  # JSON pretty-printed
    # the waiting run counts as running: another run of the workflow is busy (75)
    busy = project.cli("run", "refunds")
    assert busy.exit_code == 75 and f"run {run} is waiting for an approval" in busy.stderr
    status = project.cli("status")
    assert status.exit_code == 0, status.output  # waiting, not past its timeout: listed, healthy
    assert f"run {run} step approve-refunds: waiting" in status.stdout
    events = [e["event"] for e in _events(project, run)]
    assert "approval.requested" in events and events[-1] == "run.finished"


def _events(project: ProjectDir, run: str) -> list[dict[str, object]]:
    store = Store(project.root / ".orchestr")
    try:
        return store.events(run)
    finally:
        store.close()


def test_approve_resumes_the_run_without_re_running_the_first_steps(project: ProjectDir) -> None:
    _project(project)
    run = _waiting_run(project)
    result = project.run("approve", run, "--comment", "policy checked", "--by", "dana")
    assert result.exit_code == 0, result.output
    assert _lines(project, "drafted.txt") == ["draft"]  # the draft was kept, not run again
    assert _lines(project, "applied.txt") == [run]
    assert _runs(project)[0]["status"] == "succeeded"
    [record] = _approvals(project, run)
    assert (record["decision"], record["decided_by"], record["comment"]) == ("approved", "dana", "policy checked")
    decided = [e for e in _events(project, run) if e["event"] == "approval.decided"]
    assert decided and decided[0]["data"]["by"] == "dana"
    assert "approved by dana" in project.cli("runs", "show", run).stdout and "policy checked" in str(record)
    again = project.cli("approve", run)
    assert again.exit_code == 2 and "not waiting for an approval" in again.stderr
    assert project.cli("approvals", "list", "--format", "json").stdout.strip() == "[]"


def test_approve_detach_resumes_in_the_background(project: ProjectDir) -> None:
    import time

    _project(project)
    run = _waiting_run(project)
    result = project.run("approve", run, "--detach", "--by", "dana")
    assert result.exit_code == 0 and "resuming in the background" in result.stderr, result.output
    deadline = time.monotonic() + 30  # generous: a loaded 2-core machine
    while _runs(project)[0]["status"] != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _runs(project)[0]["status"] == "succeeded"
    assert _lines(project, "applied.txt") == [run]


def test_reject_fails_the_step_and_skips_its_dependents(project: ProjectDir) -> None:
    _project(project)
    run = _waiting_run(project)
    missing = project.cli("reject", run)
    assert missing.exit_code == 2 and "--comment" in missing.output
    result = project.run("reject", run, "--comment", "T-2 is a duplicate", "--by", "lee")
    assert result.exit_code == 1, result.output
    assert _lines(project, "applied.txt") == []
    shown = json.loads(project.cli("runs", "show", run, "--format", "json").stdout)
    steps = {s["step_id"]: s for s in shown["steps"]}
    assert steps["approve-refunds"]["status"] == "failed"
    assert steps["approve-refunds"]["reason"] == "rejected by lee: T-2 is a duplicate"
    assert steps["apply"]["status"] == "skipped"
    assert _runs(project)[0]["status"] == "failed"


def test_a_changed_show_file_is_refused_and_nothing_is_recorded(project: ProjectDir) -> None:
    _project(project)
    run = _waiting_run(project)
    refunds = project.root / "out/refunds.json"
    refunds.write_text(refunds.read_text().replace("45", "4500"))
    shown = project.cli("approvals", "show", run)
    assert "CHANGED since it was shown" in shown.stdout and '"eur": 45\n' in shown.stdout  # what was shown
    refused = project.cli("approve", run, "--by", "dana")
    assert refused.exit_code == 1 and "out/refunds.json changed after the approval was requested" in refused.stderr
    assert _approvals(project, run)[0]["decision"] is None and _lines(project, "applied.txt") == []
    assert project.run("reject", run, "--comment", "changed under me").exit_code == 1


def test_content_changed_between_approval_and_resume_fails_closed(project: ProjectDir) -> None:
    _project(project)
    run = _waiting_run(project)
    from orchestr.approvals.decide import decide
    from orchestr.events import utc_now

    store = Store(project.root / ".orchestr")
    try:  # approved by someone whose resume did not happen (their process died)
        decide(store, run, None, decision="approved", by="dana", comment=None, root=project.root, now=utc_now())
    finally:
        store.close()
    refunds = project.root / "out/refunds.json"
    refunds.write_text(refunds.read_text().replace("45", "4500"))
    result = project.run("approvals", "resume", run)
    assert result.exit_code == 1, result.output
    assert _lines(project, "applied.txt") == []
    reason = json.loads(project.cli("runs", "show", run, "--format", "json").stdout)["steps"][1]["reason"]
    assert "out/refunds.json changed after it was shown" in reason


def test_show_renders_a_diff_when_the_file_existed_before_the_run(project: ProjectDir) -> None:
    _project(project)
    project.write("out/refunds.json", '{"refunds": [{"id": "T-1", "eur": 20}]}\n')
    run = _waiting_run(project)
    text = project.cli("approvals", "show", run).stdout
    assert "--- out/refunds.json (before the run)" in text and "+++ out/refunds.json (shown for approval)" in text
    assert '+      "id": "T-2",' in text and '+      "eur": 45' in text  # the added refund, pretty-printed
    assert '       "id": "T-1",' in text  # unchanged context lines


def test_two_approvers_at_once_one_decision_is_recorded_the_other_is_told(project: ProjectDir) -> None:
    _project(project)
    run = _waiting_run(project)
    procs = [project.spawn("approve", run, "--by", name, "--comment", f"ok from {name}") for name in ("ann", "bob")]
    results = [(p.wait(timeout=60), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 1], results
    loser = next(err for code, _, err in results if code == 1)
    assert "already decided: approved by" in loser and "your decision was not recorded" in loser
    [record] = _approvals(project, run)
    winner = "ann" if results[0][0] == 0 else "bob"
    assert record["decided_by"] == winner and record["comment"] == f"ok from {winner}"
    assert _lines(project, "applied.txt") == [run]  # applied exactly once


SCHEDULE = 'schedule: { cron: "*/15 * * * *", timezone: UTC, overlap: skip }'


def _slots(project: ProjectDir) -> list[tuple[str, str | None]]:
    store = Store(project.root / ".orchestr")
    try:
        return [(str(r["slot"]), r["outcome"]) for r in store.slots("refunds")]
    finally:
        store.close()


def test_a_scheduled_approval_arriving_between_two_ticks_is_resumed_by_the_next(project: ProjectDir) -> None:
    _project(project, schedule=SCHEDULE)
    first = project.run("tick", "--now", "2026-11-24T08:15:01Z", "--wait")
    assert first.exit_code == 0, first.output
    assert _slots(project) == [("2026-11-24T08:15:00.000Z", None)]  # unsettled while the run waits
    run = str(_runs(project)[0]["id"])
    assert _runs(project)[0]["status"] == "waiting"
    # the next slot comes while it waits: the workflow is busy, so `overlap: skip` skips it
    second = project.run("tick", "--now", "2026-11-24T08:30:01Z", "--wait")
    assert second.exit_code == 0, second.output
    assert _slots(project) == [("2026-11-24T08:30:00.000Z", "skipped-overlap"), ("2026-11-24T08:15:00.000Z", None)]
    assert len(_runs(project)) == 1
    from orchestr.approvals.decide import decide
    from orchestr.events import utc_now

    store = Store(project.root / ".orchestr")
    try:  # the approver decided but did not resume (their terminal closed)
        decide(store, run, None, decision="approved", by="dana", comment=None, root=project.root, now=utc_now())
    finally:
        store.close()
    third = project.run("tick", "--now", "2026-11-24T08:31:00Z", "--wait")
    assert third.exit_code == 0, third.output
    assert _lines(project, "applied.txt") == [run] and _lines(project, "drafted.txt") == ["draft"]
    assert _runs(project)[0]["status"] == "succeeded"
    assert _slots(project)[1] == ("2026-11-24T08:15:00.000Z", "ran")  # settled when the run finally ended


def test_an_unanswered_approval_times_out_at_the_tick_and_fails_closed(project: ProjectDir) -> None:
    _project(project, schedule=SCHEDULE, timeout="1h")
    assert project.run("tick", "--now", "2026-11-24T08:15:01Z", "--wait").exit_code == 0
    run = str(_runs(project)[0]["id"])
    expires = str(_approvals(project, run)[0]["expires_at"])
    from datetime import timedelta

    from orchestr.events import iso, parse_iso

    late = iso(parse_iso(expires) + timedelta(minutes=1))  # the tick's clock, past the timeout
    overdue = project.cli("status", "--now", late, "--format", "json")
    assert overdue.exit_code == 1
    assert any("was not answered by" in p for p in json.loads(overdue.stdout)["problems"])
    result = project.run("tick", "--now", late, "--wait")
    assert result.exit_code == 1, result.output  # the drainer's resumed run failed
    assert _lines(project, "applied.txt") == []
    record = _approvals(project, run)[0]
    assert (record["decision"], record["decided_by"]) == ("timed-out", "orchestr tick")
    steps = {s["step_id"]: s for s in json.loads(project.cli("runs", "show", run, "--format", "json").stdout)["steps"]}
    assert "timed out: no decision by" in steps["approve-refunds"]["reason"]
    assert steps["apply"]["status"] == "skipped"
    assert ("2026-11-24T08:15:00.000Z", "failed") in _slots(project)


def test_approval_steps_are_validated_at_their_line_and_shown_in_every_plan_format(project: ProjectDir) -> None:
    _project(project)
    ok = project.cli("plan", "refunds", "--format", "json")
    assert ok.exit_code == 0, ok.output
    step = json.loads(ok.stdout)["steps"][1]
    assert step["kind"] == "approval" and step["approval"]["timeout"] == "1h"
    assert step["approval"]["show"] == ["out/refunds.json"]
    assert '{{"approve-refunds (approval)"}}' in project.cli("plan", "refunds", "--format", "mermaid").stdout
    assert "shape=hexagon" in project.cli("plan", "refunds", "--format", "dot").stdout
    assert "asks: Apply" in project.cli("plan", "refunds").stdout
    path = project.root / "workflows/refunds.yaml"
    path.write_text(path.read_text().replace("    approval:\n", "    timeout: 5m\n    approval:\n")
                    .replace("[out/refunds.json]", "[../secrets.json]")
                    .replace('notify: echo "$ORCHESTR_APPROVE_COMMAND"', 'notify: echo ${{ inputs.x }}'))
    bad = project.cli("validate")
    assert bad.exit_code == 2
    assert "workflows/refunds.yaml:12:14: error: an approval step has no `timeout:`" in bad.stderr
    assert "workflows/refunds.yaml:15:14: error: file '../secrets.json' contains '..'" in bad.stderr
    assert "inside notify: would put a value into shell source" in bad.stderr
    path.write_text(path.read_text().replace("    approval:\n", "    run: echo\n    approval:\n"))
    both = project.cli("validate")
    assert "a step has one of `run:`, `agent:` or `approval:`, not `run:` and `approval:`" in both.stderr


def test_the_waiting_state_survives_in_the_run_record_not_in_a_process(project: ProjectDir, tmp_path: Path) -> None:
    _project(project)
    run = _waiting_run(project)
    resumed = project.run("run", "refunds", "--resume", run)  # resumed by hand before anyone decided
    assert resumed.exit_code == 4, resumed.output  # still waiting: asked once, not again
    assert len(_lines(project, "notified.txt")) == 1 and len(_approvals(project, run)) == 1


# --- the example project's refunds workflow: the agent proposes, a person decides, a script applies


def _refunds_example(tmp_path: Path) -> ProjectDir:
    from tests.demo_recording import copy_example

    return ProjectDir(copy_example(tmp_path / "acme"))


def _draft(amount: float) -> dict[str, object]:
    return {"source": "out/support/tickets.json", "refunds": [
        {"ticket": "T-48214", "customer": "Kestrel Analytics", "amount_eur": amount, "policy_section": 1,
         "reason": "Invoice INV-2025-0219 was charged twice."}]}


def test_the_example_refunds_are_drafted_checked_approved_then_applied(tmp_path: Path) -> None:
    from tests.fakeapi import FakeLLMServer, Reply, ToolCall

    example = _refunds_example(tmp_path)
    draft = json.dumps(_draft(189.0))
    with FakeLLMServer() as server:
        server.anthropic.enqueue(Reply.tool_calls(ToolCall("write_file", {"path": "out/support/refunds/refunds.json",
                                                                          "content": draft})),
                                 Reply.json({"count": 1, "total_eur": 189.0}))
        waiting = example.cli("run", "support-refunds", env=server.env())
        assert waiting.exit_code == 4, waiting.output
        run = str(_runs(example)[0]["id"])
        [record] = _approvals(example, run)
        assert record["message"] == "Apply 1 refunds, 189.0 EUR in all?"
        posted = json.loads((example.root / "out/notifications.jsonl").read_text())
        assert posted["channel"] == "#support-refunds" and f"orchestr approve {run} approve-refunds" in posted["text"]
        approved = example.cli("approve", run, "--comment", "duplicate confirmed by billing", env=server.env())
        assert approved.exit_code == 0, approved.output
        assert len(server.anthropic.requests) == 2  # resuming did not ask the model again
    applied = (example.root / "out/support/refunds/applied.jsonl").read_text().splitlines()
    assert [json.loads(line)["ticket"] for line in applied] == ["T-48214"]


def test_the_example_policy_check_refuses_a_refund_above_500_eur(tmp_path: Path) -> None:
    from tests.fakeapi import FakeLLMServer, ReceivedRequest, Reply, ToolCall

    example = _refunds_example(tmp_path)

    def stubborn(request: ReceivedRequest) -> Reply:  # told the check failed, it drafts the same again
        if request.body["messages"][-1]["role"] == "user" and "tool_result" in json.dumps(request.body["messages"][-1]):
            return Reply.json({"count": 1, "total_eur": 900.0})
        return Reply.tool_calls(ToolCall("write_file", {"path": "out/support/refunds/refunds.json",
                                                        "content": json.dumps(_draft(900.0))}))

    with FakeLLMServer() as server:
        server.anthropic.responder = stubborn
        result = example.cli("run", "support-refunds", env=server.env())
    assert result.exit_code == 3, result.output  # unverified: nobody is asked to approve it
    assert "above the 500 EUR limit" in result.output
    assert example.cli("approvals", "list", "--format", "json").stdout.strip() == "[]"
    assert not (example.root / "out/support/refunds/applied.jsonl").exists()


def test_under_overlap_queue_a_slot_due_while_a_run_waits_runs_after_it(project: ProjectDir) -> None:
    _project(project, schedule='schedule: { cron: "*/15 * * * *", timezone: UTC, overlap: queue }')
    assert project.run("tick", "--now", "2026-11-24T08:15:01Z", "--wait").exit_code == 0
    first = str(_runs(project)[0]["id"])
    assert project.run("tick", "--now", "2026-11-24T08:30:01Z", "--wait").exit_code == 0
    assert len(_runs(project)) == 1  # queued, not started, and never `skipped-overlap`
    assert _slots(project) == [("2026-11-24T08:30:00.000Z", None), ("2026-11-24T08:15:00.000Z", None)]
    assert project.run("approve", first, "--by", "dana").exit_code == 0
    assert _slots(project)[1] == ("2026-11-24T08:15:00.000Z", "ran")
    assert project.run("tick", "--now", "2026-11-24T08:31:00Z", "--wait").exit_code == 0
    runs = _runs(project)
    assert len(runs) == 2 and runs[0]["status"] == "waiting"  # the queued slot's run, waiting in its turn
    assert _slots(project)[0] == ("2026-11-24T08:30:00.000Z", None)


def test_approving_too_late_is_refused_and_the_run_fails_closed(project: ProjectDir) -> None:
    import time

    _project(project, timeout="1s")
    run = _waiting_run(project)
    time.sleep(1.5)
    late = project.run("approve", run, "--by", "dana")
    assert late.exit_code == 1, late.output
    assert "timed out at" in late.stderr and "can no longer be approved" in late.stderr
    record = _approvals(project, run)[0]
    assert (record["decision"], record["decided_by"]) == ("timed-out", "orchestr")
    assert _runs(project)[0]["status"] == "failed" and _lines(project, "applied.txt") == []


def test_a_hyphenated_step_id_reads_as_in_github_actions(project: ProjectDir) -> None:
    _project(project)
    path = project.root / "workflows/refunds.yaml"
    path.write_text(path.read_text().replace("- id: draft\n", "- id: draft-refunds\n")
                    .replace("needs: [draft]", "needs: [draft-refunds]").replace("steps.draft.", "steps.draft-refunds."))
    run = _waiting_run(project)
    assert _approvals(project, run)[0]["message"] == "Apply 2 refunds?"
    path.write_text(path.read_text().replace("steps.draft-refunds.outputs", "steps.draft-refund.outputs"))
    bad = project.cli("validate")
    assert bad.exit_code == 2 and "unknown step 'draft-refund'" in bad.stderr


def test_a_decided_run_that_cannot_be_resumed_ends_failed_instead_of_waiting_forever(project: ProjectDir) -> None:
    _project(project, schedule=SCHEDULE)
    assert project.run("tick", "--now", "2026-11-24T08:15:01Z", "--wait").exit_code == 0
    run = str(_runs(project)[0]["id"])
    from orchestr.approvals.decide import decide
    from orchestr.events import utc_now

    store = Store(project.root / ".orchestr")
    try:
        decide(store, run, None, decision="approved", by="dana", comment=None, root=project.root, now=utc_now())
    finally:
        store.close()
    path = project.root / "workflows/refunds.yaml"
    path.write_text(path.read_text().replace("needs: [approve-refunds]", "needs: [approve-refundz]"))
    assert project.run("tick", "--now", "2026-11-24T08:16:00Z", "--wait").exit_code == 1
    assert _runs(project)[0]["status"] == "failed"
    assert _slots(project)[0][1] == "failed" and _lines(project, "applied.txt") == []
