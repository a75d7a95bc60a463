"""The `approval:` step: on its first visit it asks (records the request, notifies) and the run
stops `waiting`; on a later visit (the run resumed) it reads the decision.

It fails closed: a rejection, a timeout and content changed after approval all fail the step, and
none of them is retried (`permanent`): only a person's approval of exactly what was shown passes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime

from orchestr.approvals.files import baseline_path, keep_shown, sha256_of
from orchestr.approvals.records import ApprovalBook, ApprovalRecord, ShownFile
from orchestr.events import utc_now
from orchestr.expressions import ExpressionError, render_text
from orchestr.models import ApprovalSpec, ApprovalStep, ShellStep, format_duration
from orchestr.permissions import PathDenied, resolve_in_root
from orchestr.steps.base import ActionResult, Attempt

NOTIFY_TIMEOUT_SECONDS = 60.0
Clock = Callable[[], datetime]


class ApprovalRunner:
    def __init__(self, book: ApprovalBook, *, clock: Clock = utc_now) -> None:
        self.book = book
        self.clock = clock

    def run(self, attempt: Attempt) -> ActionResult:
        spec = attempt.step.spec
        assert isinstance(spec, ApprovalStep)
        latest = self.book.latest(attempt.run_id, attempt.step.id)
        if latest is None or latest.consumed:
            return self._ask(attempt, spec.approval, number=latest.request + 1 if latest else 1)
        if latest.expired(self.clock()):
            self.book.decide(latest, decision="timed-out", by="orchestr",
                             comment=f"no decision within {format_duration(spec.approval.timeout)}", now=self.clock())
            latest = self.book.latest(attempt.run_id, attempt.step.id)
            assert latest is not None
        if latest.decision is None:
            return _waiting(attempt, latest)
        self.book.consume(latest)
        return self._verdict(attempt, latest)

    def _ask(self, attempt: Attempt, spec: ApprovalSpec, *, number: int) -> ActionResult:
        try:
            # stored and shown to people: secrets are hidden as in events
            message = attempt.bus.redactor.text(render_text(spec.message, attempt.scope))
        except ExpressionError as exc:
            return ActionResult("error", error=f"approval.message: {exc}", permanent=True)
        files: list[ShownFile] = []
        for name in spec.show:
            try:
                path = resolve_in_root(attempt.root, name)
            except PathDenied as exc:
                return ActionResult("error", error=f"approval.show: {exc}", permanent=True)
            if not path.is_file():
                return ActionResult("error", permanent=True,
                                    error=f"approval.show: {name} does not exist, so there is nothing to approve")
            # kept in the run's own folder (history), not its work folder (removed when the run ends)
            run_folder = attempt.work_dir.parent
            keep_shown(path, run_folder, attempt.step.id, number, name)
            baseline = baseline_path(run_folder, name).is_file()
            files.append(ShownFile(name, sha256_of(path), baseline))
        now = self.clock()
        record = self.book.request(run_id=attempt.run_id, step_id=attempt.step.id, workflow=attempt.workflow,
                                   message=message, files=files, now=now, expires=now + spec.timeout)
        notified = _notify(attempt, spec, record) if spec.notify else None
        if notified is not None:
            self.book.note_notify(record, notified)
        attempt.bus.emit("approval.requested", step=attempt.step.id, attempt=attempt.number, message=message,
                         files=[f.to_json() for f in files], expires_at=record.expires_at, notify=notified,
                         approve=f"orchestr approve {attempt.run_id} {attempt.step.id}")
        return _waiting(attempt, record)

    def _verdict(self, attempt: Attempt, record: ApprovalRecord) -> ActionResult:
        outputs: dict[str, object] = {"decision": record.decision, "by": record.decided_by,
                                      "comment": record.comment, "decided_at": record.decided_at}
        if record.decision == "rejected":
            why = f": {record.comment}" if record.comment else ""
            return ActionResult("error", error=f"rejected by {record.decided_by}{why}", outputs=outputs, permanent=True)
        if record.decision == "timed-out":
            return ActionResult("error", outputs=outputs, permanent=True,
                                error=f"timed out: no decision by {record.expires_at} (requested {record.requested_at});"
                                      " an approval never grants itself")
        changed = [f.path for f in record.files if _current_hash(attempt, f.path) != f.sha256]
        if changed:
            return ActionResult("error", outputs=outputs, permanent=True,
                                error=f"approved by {record.decided_by}, but {', '.join(changed)} changed after it was "
                                      "shown: what was approved is not what would be applied")
        return ActionResult("ok", outputs=outputs)


def _waiting(attempt: Attempt, record: ApprovalRecord) -> ActionResult:
    return ActionResult("waiting", permanent=True,
                        error=f"waiting for approval until {record.expires_at}: "
                              f"orchestr approve {attempt.run_id} {attempt.step.id}")


def _current_hash(attempt: Attempt, name: str) -> str | None:
    try:
        path = resolve_in_root(attempt.root, name)
        return sha256_of(path) if path.is_file() else None
    except (PathDenied, OSError):
        return None


def _notify(attempt: Attempt, spec: ApprovalSpec, record: ApprovalRecord) -> str:
    """Run `notify:` as a shell step would (bash, the step's env, the project as cwd); say how it went.

    A failed notification is recorded and shown, but the request stands: it still waits, and
    `orchestr status` lists it.
    """
    from orchestr.steps.shell import ShellRunner

    assert spec.notify is not None
    shell = ShellStep(id=attempt.step.id, run=spec.notify)
    env = {**attempt.env, "ORCHESTR_APPROVAL_MESSAGE": record.message,
           "ORCHESTR_APPROVAL_FILES": "\n".join(f.path for f in record.files),
           "ORCHESTR_APPROVAL_EXPIRES": record.expires_at,
           "ORCHESTR_APPROVE_COMMAND": f"orchestr approve {attempt.run_id} {attempt.step.id}"}
    notify_attempt = dataclasses.replace(attempt, step=dataclasses.replace(attempt.step, spec=shell), env=env,
                                         timeout=NOTIFY_TIMEOUT_SECONDS)
    result = ShellRunner().run(notify_attempt)
    return "ok" if result.status == "ok" else f"failed: {result.error}"

