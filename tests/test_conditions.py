"""`if:` status functions (`success()`, `failure()`, `always()`, `cancelled()`), as GitHub Actions has them.

Every test runs real shell steps through the CLI; a step that ran leaves a file named after it.
"""

from __future__ import annotations

import json
import signal
import textwrap
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, ProjectDir
from tests.demo_recording import RECORDING, copy_example


def _events(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _finished(project: ProjectDir, events: str = "ev.jsonl") -> dict[str, dict[str, object]]:
    return {str(e["step"]): e for e in _events(project.root / events) if e["event"] == "step.finished"}


def _statuses(project: ProjectDir) -> dict[str, object]:
    return {step: event["status"] for step, event in _finished(project).items()}


def _run(project: ProjectDir, workflow: str = "w", *args: str) -> int:
    result = project.cli("run", workflow, "--events", "ev.jsonl", *args)
    assert "Traceback" not in result.output, result.output
    return result.exit_code


# A build that fails (or not, with -i ok=true), a step after it, and a handler after that one.
CHAIN = """
    inputs:
      ok: { type: boolean, default: false }
    steps:
      - id: build
        run: '[ "$OK" = true ] || exit 1'
        env: { OK: "${{ inputs.ok }}" }
      - id: test
        needs: [build]
        run: touch test.ran
      - id: page
        needs: [test]
        if: ${{ failure() }}
        run: echo "$BUILD" > page.ran
        env: { BUILD: "${{ steps.build.status }}" }
      - id: after-page
        needs: [page]
        run: touch after-page.ran
      - id: cleanup
        needs: [build]
        if: ${{ always() }}
        run: touch cleanup.ran
"""


def test_failure_runs_after_a_failed_step_upstream_and_the_run_still_fails(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", CHAIN)
    assert _run(project) == 1  # the handler succeeded, the run still reports the failure
    assert _statuses(project) == {"build": "failed", "test": "skipped", "page": "succeeded",
                                  "cleanup": "succeeded", "after-page": "skipped"}
    # `page` needs only `test`, which was skipped: failure() looks at every step upstream
    assert (project.root / "page.ran").read_text() == "failed\n"
    assert (project.root / "cleanup.ran").exists()
    assert not (project.root / "test.ran").exists() and not (project.root / "after-page.ran").exists()
    # a default (success()) step after the handler is skipped: a step further up failed
    assert _finished(project)["after-page"]["reason"] == "upstream step 'build' failed"


def test_failure_does_not_run_when_everything_succeeded_but_always_does(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", CHAIN)
    assert _run(project, "w", "-i", "ok=true") == 0
    assert _statuses(project) == {"build": "succeeded", "test": "succeeded", "page": "skipped",
                                  "cleanup": "succeeded", "after-page": "skipped"}
    assert _finished(project)["page"]["reason"] == "condition was false"
    assert not (project.root / "page.ran").exists() and (project.root / "cleanup.ran").exists()


def test_failure_runs_after_an_unverified_step_and_the_run_exits_3(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", """
        steps:
          - id: report
            run: echo "rows=0" >> "$ORCHESTR_OUTPUT"
            verify: [ { expr: "${{ steps.report.outputs.rows | int > 0 }}" } ]
          - id: publish
            needs: [report]
            run: touch publish.ran
          - id: page
            needs: [publish]
            if: failure() && steps.report.status == 'unverified'
            run: touch page.ran
          - id: not-on-error
            needs: [report]
            if: ${{ failure() and steps.report.status == 'failed' }}
            run: touch not-on-error.ran
    """)
    assert _run(project) == 3
    assert _statuses(project) == {"report": "unverified", "publish": "skipped", "page": "succeeded",
                                  "not-on-error": "skipped"}
    assert (project.root / "page.ran").exists() and not (project.root / "not-on-error.ran").exists()


def test_success_is_the_default_and_can_be_written(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", """
        steps:
          - id: broken
            run: exit 3
          - id: implicit
            needs: [broken]
            run: touch implicit.ran
          - id: explicit
            needs: [broken]
            if: ${{ success() }}
            run: touch explicit.ran
          - id: fine
            run: echo "n=2" >> "$ORCHESTR_OUTPUT"
          - id: combined
            needs: [fine]
            if: ${{ steps.fine.outputs.n | int > 1 }}
            run: touch combined.ran
    """)
    assert _run(project) == 1
    finished = _finished(project)
    assert finished["implicit"]["status"] == "skipped"
    assert finished["implicit"]["reason"] == "needs 'broken', which failed"
    assert finished["explicit"]["status"] == "skipped"
    assert finished["combined"]["status"] == "succeeded"
    assert not any((project.root / f"{s}.ran").exists() for s in ("implicit", "explicit"))


def test_a_failure_with_continue_on_error_is_not_a_failure(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", """
        steps:
          - id: optional
            run: exit 1
            continue_on_error: true
          - id: next
            needs: [optional]
            run: touch next.ran
          - id: page
            needs: [next]
            if: ${{ failure() }}
            run: touch page.ran
          - id: look
            needs: [optional]
            if: ${{ always() && steps.optional.status == 'failed' }}
            run: touch look.ran
    """)
    assert _run(project) == 0
    assert _statuses(project) == {"optional": "failed", "next": "succeeded", "page": "skipped", "look": "succeeded"}


def test_cancelled_and_its_negation_when_the_run_is_not_cancelled(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", """
        steps:
          - id: broken
            run: exit 1
          - id: not-cancelled
            needs: [broken]
            if: ${{ !cancelled() }}
            run: touch not-cancelled.ran
          - id: jinja-not
            needs: [broken]
            if: ${{ not cancelled() and failure() }}
            run: touch jinja-not.ran
          - id: on-cancel
            needs: [broken]
            if: ${{ cancelled() }}
            run: touch on-cancel.ran
          - id: or
            needs: [broken]
            if: ${{ cancelled() || steps.broken.status == "failed" }}
            run: touch or.ran
    """)
    assert _run(project) == 1
    assert _statuses(project) == {"broken": "failed", "not-cancelled": "succeeded", "jinja-not": "succeeded",
                                  "on-cancel": "skipped", "or": "succeeded"}


def test_github_operators_leave_quoted_text_alone(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", """
        inputs:
          mode: { type: string, default: "a&&b" }
        steps:
          - id: say
            if: ${{ !cancelled() && inputs.mode == 'a&&b' || inputs.mode == "x!" }}
            run: printf '%s' "$TEXT" > said.txt
            env:
              TEXT: >-
                ${{ 'Hi! && bye || "quoted!"' ~ ' it\\'s!' ~ (' ok' if inputs.mode != 'no' else '') }}
    """)
    assert _run(project) == 0
    assert (project.root / "said.txt").read_text() == 'Hi! && bye || "quoted!" it\'s! ok'


def test_a_step_skipped_by_its_condition_does_not_fail_the_run(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", """
        steps:
          - id: maybe
            if: ${{ false }}
            run: touch maybe.ran
          - id: after
            needs: [maybe]
            run: touch after.ran
          - id: handler
            needs: [after]
            if: ${{ failure() }}
            run: touch handler.ran
          - id: anyway
            needs: [after]
            if: ${{ always() }}
            run: touch anyway.ran
    """)
    assert _run(project) == 0
    assert _statuses(project) == {"maybe": "skipped", "after": "skipped", "handler": "skipped", "anyway": "succeeded"}


def test_an_if_that_cannot_be_evaluated_fails_the_step_and_feeds_failure(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", """
        steps:
          - id: produce
            run: "true"
          - id: odd
            needs: [produce]
            if: ${{ steps.produce.outputs.missing == 'x' }}
            run: touch odd.ran
          - id: page
            needs: [odd]
            if: ${{ failure() }}
            run: touch page.ran
    """)
    assert _run(project) == 1
    finished = _finished(project)
    assert finished["odd"]["status"] == "failed" and str(finished["odd"]["reason"]).startswith("if: ")
    assert finished["page"]["status"] == "succeeded"


def test_a_long_chain_is_walked_without_recursion(project: ProjectDir) -> None:
    """failure() at the end of a 1,500-step chain: the upstream summary is built iteratively, once per step."""
    steps = ["steps:", "  - id: s0", "    run: exit 1"]
    for i in range(1, 1500):
        steps += [f"  - id: s{i}", f"    needs: [s{i - 1}]", "    run: 'true'"]
    steps += ["  - id: page", "    needs: [s1499]", "    if: ${{ failure() }}", "    run: touch page.ran"]
    project.write("workflows/w.yaml", "\n".join(steps) + "\n")
    assert _run(project) == 1
    assert (project.root / "page.ran").exists()
    assert _finished(project)["s1499"]["status"] == "skipped"


def test_ready_steps_start_in_plan_order_one_at_a_time(project: ProjectDir) -> None:
    """With --max-parallel 1 the ready queue hands out steps in plan order (layer by layer, file order within)."""
    project.write("workflows/w.yaml", """
        steps:
          - id: root
            run: exit 1
          - id: z-handler
            needs: [root]
            if: ${{ failure() }}
            run: "true"
          - id: free-1
            run: "true"
          - id: a-always
            needs: [root]
            if: ${{ always() }}
            run: "true"
          - id: free-2
            run: "true"
          - id: last
            needs: [z-handler, a-always]
            if: ${{ always() }}
            run: "true"
    """)
    assert _run(project, "w", "--max-parallel", "1") == 1
    started = [e["step"] for e in _events(project.root / "ev.jsonl") if e["event"] == "step.started"]
    plan = json.loads(project.cli("plan", "w", "--format", "json").stdout)
    assert started == [s["id"] for s in plan["steps"]] == ["root", "free-1", "free-2", "z-handler", "a-always", "last"]


def test_no_step_starts_once_the_run_is_cancelled(project: ProjectDir) -> None:
    """SIGTERM: always() and cancelled() steps do not start, so the run stops promptly (130)."""
    project.write("workflows/w.yaml", """
        steps:
          - id: slow
            run: touch started && sleep 30
          - id: cleanup
            needs: [slow]
            if: ${{ always() }}
            run: touch cleanup.ran
          - id: on-cancel
            needs: [slow]
            if: ${{ cancelled() }}
            run: touch on-cancel.ran
    """)
    proc = project.spawn("run", "w", "--events", "ev.jsonl")
    deadline = time.monotonic() + 30
    while not (project.root / "started").exists():
        assert time.monotonic() < deadline and proc.poll() is None, "the slow step never started"
        time.sleep(0.05)
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert time.monotonic() - signalled < 10, "a 30 s step must not hold up a cancelled run"
    record = json.loads(project.cli("runs", "show", "last", "--format", "json").stdout)
    assert record["exit_code"] == 130
    assert {s["step_id"]: s["status"] for s in record["steps"]} == {
        "slow": "cancelled", "cleanup": "cancelled", "on-cancel": "cancelled"}
    assert not (project.root / "cleanup.ran").exists() and not (project.root / "on-cancel.ran").exists()


def test_a_resumed_run_reruns_the_failure_and_does_not_page_twice(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", """
        steps:
          - id: flaky
            run: '[ -f fixed ] || exit 1'
          - id: page
            needs: [flaky]
            if: ${{ failure() }}
            run: echo paged >> page.log
    """)
    assert _run(project) == 1
    (project.root / "fixed").touch()
    resumed = project.cli("run", "w", "--resume", "last", "--events", "ev2.jsonl")
    assert resumed.exit_code == 0, resumed.output
    # the handler that paged in the first run succeeded, so the resumed run keeps it and pages no more
    assert {s: e["status"] for s, e in _finished(project, "ev2.jsonl").items()} == {"flaky": "succeeded"}
    assert (project.root / "page.log").read_text() == "paged\n"


# --- plan -------------------------------------------------------------------------------------


def test_plan_shows_every_condition_in_every_format(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", CHAIN)
    plan = json.loads(project.cli("plan", "w", "--format", "json").stdout)
    shown = {s["id"]: (s["if"], s["condition"]) for s in plan["steps"]}
    assert shown == {
        "build": (None, "success()"),
        "test": (None, "success()"),
        "page": ("failure()", "failure()"),
        "cleanup": ("always()", "always()"),
        "after-page": (None, "success()"),
    }
    text = project.cli("plan", "w").stdout
    header = next(line for line in text.splitlines() if "step" in line and "needs" in line)
    assert " if " in header
    page_row = next(line for line in text.splitlines() if " page " in line)
    assert "failure()" in page_row
    mermaid = project.cli("plan", "w", "--format", "mermaid").stdout
    assert 's_page["page (shell)<br/>if: failure()"]' in mermaid
    assert "s_test -.-> s_page" in mermaid and "s_build --> s_test" in mermaid
    dot = project.cli("plan", "w", "--format", "dot").stdout
    assert '"page" [label="page (shell)\\nif: failure()"];' in dot
    assert '"test" -> "page" [style=dashed];' in dot and '"build" -> "test";' in dot


def test_plan_shows_the_implicit_success_of_an_ordinary_condition(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", """
        steps:
          - id: count
            run: echo "n=1" >> "$ORCHESTR_OUTPUT"
          - id: report
            needs: [count]
            if: ${{ steps.count.outputs.n | int > 0 }}
            run: "true"
    """)
    plan = json.loads(project.cli("plan", "w", "--format", "json").stdout)
    report = plan["steps"][1]
    assert report["if"] == "steps.count.outputs.n | int > 0"
    assert report["condition"] == "success() and (steps.count.outputs.n | int > 0)"
    mermaid = project.cli("plan", "w", "--format", "mermaid").stdout
    assert "if: steps.count.outputs.n | int #gt; 0" in mermaid and "s_count --> s_report" in mermaid


# --- validation -------------------------------------------------------------------------------


def _diagnostics(project: ProjectDir) -> list[str]:
    result = project.cli("validate")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    return [line for line in result.stderr.splitlines() if ": error: " in line]


def test_status_functions_are_checked_where_they_are_written(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", """
        steps:
          - id: a
            run: "true"
          - id: b
            needs: [a]
            if: ${{ always(1) }}
            env: { FAILED: "${{ failure() }}" }
            run: "true"
            verify:
              - expr: ${{ success() }}
    """)
    assert _diagnostics(project) == [
        "workflows/w.yaml:6:9: error: always() takes no arguments",
        "workflows/w.yaml:7:20: error: failure() can be used only in a step's `if:` "
        "(status functions: success(), failure(), always(), cancelled())",
        "workflows/w.yaml:10:15: error: success() can be used only in a step's `if:` "
        "(status functions: success(), failure(), always(), cancelled())",
    ]


def test_an_unknown_filter_is_found_at_validate_time(project: ProjectDir) -> None:
    project.write("workflows/w.yaml", """
        inputs:
          n: { type: string, default: "2" }
        steps:
          - id: a
            if: ${{ inputs.n | intt > 1 }}
            run: "true"
    """)
    assert _diagnostics(project) == ["workflows/w.yaml:5:9: error: unknown filter 'intt' (`| intt`); did you mean 'int'?"]
    # the same expression with the real filter is valid, and runs
    project.write("workflows/w.yaml", (project.root / "workflows/w.yaml").read_text().replace("intt", "int"))
    assert project.cli("validate").exit_code == 0
    assert _run(project) == 0


def test_a_scheduled_workflow_needs_defaults_for_its_required_inputs(project: ProjectDir) -> None:
    workflow = textwrap.dedent("""
        schedule: { cron: "*/15 * * * *" }
        inputs:
          since: { type: string, default: "1h" }
          region:
            type: string
            required: true
        steps:
          - id: a
            run: echo "$REGION"
            env: { REGION: "${{ inputs.region }}" }
    """)
    project.write("workflows/w.yaml", workflow)
    result = project.cli("validate")
    assert result.exit_code == 2, result.output
    assert ("workflows/w.yaml:4:3: error: input 'region' is required and has no default, but this workflow has a "
            "`schedule:` and a scheduled run cannot be given inputs") in result.stderr
    assert "give it a default" in result.stderr
    project.write("workflows/w.yaml", workflow.replace("required: true", "required: true\n    default: eu"))
    assert project.cli("validate").exit_code == 0
    # without a schedule, a required input is fine: `run -i` gives it
    project.write("workflows/w.yaml", workflow.replace('schedule: { cron: "*/15 * * * *" }\n', ""))
    assert project.cli("validate").exit_code == 0


# --- the example project ----------------------------------------------------------------------


@pytest.fixture
def example(tmp_path: Path) -> ProjectDir:
    return ProjectDir(copy_example(tmp_path / "acme"))


def test_the_example_pages_on_call_when_triage_cannot_run(example: ProjectDir) -> None:
    """fetch fails (a bad --since); triage is skipped; the failure() step pages through scripts/notify.py."""
    workflow = example.root / "workflows/support-triage.yaml"
    # one attempt, so that the test does not sit through the example's retry backoff
    workflow.write_text(workflow.read_text().replace("retry: { attempts: 3, backoff: 5s }\n    verify:",
                                                     "retry: { attempts: 1 }\n    verify:", 1))
    offline = {"ANTHROPIC_API_KEY": "", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}
    result = example.cli("run", "support-triage", "-i", "since=soon", "--replay", str(RECORDING),
                         "--events", "ev.jsonl", env=offline)
    assert result.exit_code == 1, result.output
    assert _statuses(example) == {"fetch": "failed", "triage": "skipped", "page-oncall": "skipped",
                                  "page-triage-failed": "succeeded"}
    page = json.loads((example.root / "out/notifications.jsonl").read_text().splitlines()[-1])
    assert page["channel"] == "#support-urgent"
    assert page["text"].startswith("support-triage did not complete (fetch: failed, triage: skipped)")
    assert (REPO / "scripts/notify.py").is_file()
