"""An in-memory Store and Lock for tests of code above the seam (and the contract suite's third backend).

Several FakeStore objects over one FakeDatabase behave like several connections to one database.
It keeps the same rows, in the same shapes, as the SQL stores; nothing survives the process.
"""

from __future__ import annotations

import itertools
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from orchestr.errors import Busy
from orchestr.events import Event, iso, parse_iso, utc_now
from orchestr.store.base import SCHEMA_VERSION, LockHandover, RunRow, StoreInfo, host_id

FAKE_LOCK_VAR = "ORCHESTR_FAKE_LOCK"


@dataclass
class FakeDatabase:
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    steps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    attempts: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    schedules: dict[str, dict[str, str]] = field(default_factory=dict)
    slots: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    leases: dict[str, dict[str, Any]] = field(default_factory=dict)
    approvals: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    guard: threading.RLock = field(default_factory=threading.RLock)
    seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))


def _copy(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: (dict(v) if isinstance(v, dict) else list(v) if isinstance(v, list) else v) for k, v in row.items()}


class FakeStore:
    backend = "fake"
    url = "memory:"

    def __init__(self, db: FakeDatabase | None = None, *, state_dir: Path = Path(".orchestr")) -> None:
        self.db = db or FakeDatabase()
        self.state_dir = state_dir

    def close(self) -> None:
        """Nothing to release: the database lives as long as its FakeDatabase."""

    # runs
    def create_run(self, *, run_id: str, workflow: str, trigger: str, inputs: Mapping[str, object],
                   options: Mapping[str, object], slot: str | None = None) -> None:
        now = iso(utc_now())
        with self.db.guard:
            self.db.runs[run_id] = {
                "id": run_id, "workflow": workflow, "status": "running", "trigger": trigger, "started_at": now,
                "finished_at": None, "heartbeat_at": now, "pid": os.getpid(), "host": host_id(),
                "inputs": dict(inputs), "options": dict(options), "exit_code": None, "error": None, "tokens": {},
                "slot": slot}

    def reopen_run(self, run_id: str) -> None:
        now = iso(utc_now())
        with self.db.guard:
            for key, attempt in self.db.attempts.items():
                if key[0] == run_id and attempt["status"] == "running":
                    attempt.update(status="crashed", finished_at=now, error="the orchestr process died")
            self.db.runs[run_id].update(status="running", finished_at=None, exit_code=None, error=None,
                                        heartbeat_at=now, pid=os.getpid(), host=host_id())

    def heartbeat(self, run_id: str) -> None:
        with self.db.guard:
            if run_id in self.db.runs:
                self.db.runs[run_id]["heartbeat_at"] = iso(utc_now())

    def finish_run(self, run_id: str, *, status: str, exit_code: int, error: str | None,
                   tokens: Mapping[str, int]) -> None:
        with self.db.guard:
            self.db.runs[run_id].update(status=status, exit_code=exit_code, error=error, finished_at=iso(utc_now()),
                                        tokens=dict(tokens))

    def run(self, run_id: str) -> RunRow | None:
        with self.db.guard:
            row = self.db.runs.get(run_id)
            return RunRow(**_copy(row)) if row else None

    def runs(self, *, workflow: str | None = None, limit: int = 50) -> list[RunRow]:
        with self.db.guard:
            rows = [r for r in self.db.runs.values() if workflow is None or r["workflow"] == workflow]
            rows.sort(key=lambda r: (r["started_at"], r["id"]), reverse=True)
            return [RunRow(**_copy(r)) for r in rows[:limit]]

    def find_run(self, ref: str, *, workflow: str | None = None) -> RunRow | None:
        if ref == "last":
            found = self.runs(workflow=workflow, limit=1)
            return found[0] if found else None
        exact = self.run(ref)
        if exact is not None:
            return exact
        with self.db.guard:
            matches = sorted(r for r in self.db.runs if r.startswith(ref))
        return self.run(matches[0]) if len(matches) == 1 else None

    # steps, attempts, events
    def save_step(self, run_id: str, step_id: str, *, status: str, attempts: int, started_at: str | None,
                  outputs: Mapping[str, object], output: object, reason: str | None,
                  tokens: Mapping[str, int]) -> None:
        with self.db.guard:
            order = self.db.steps.get((run_id, step_id), {}).get("_order") or next(self.db.seq)
            self.db.steps[(run_id, step_id)] = {
                "run_id": run_id, "step_id": step_id, "status": status, "attempts": attempts, "started_at": started_at,
                "finished_at": iso(utc_now()), "outputs": dict(outputs), "output": output, "reason": reason,
                "tokens": dict(tokens), "_order": order}

    def steps(self, run_id: str) -> list[dict[str, Any]]:
        with self.db.guard:
            rows = [r for (run, _), r in self.db.steps.items() if run == run_id]
        rows.sort(key=lambda r: (r["started_at"] is None, r["started_at"] or "", r["_order"]))
        return [{k: v for k, v in _copy(r).items() if k != "_order"} for r in rows]

    def save_attempt(self, run_id: str, step_id: str, attempt: int, **fields: object) -> None:
        row: dict[str, Any] = {c: fields.get(c) for c in ("status", "started_at", "finished_at", "exit_code", "error",
                                                         "stdout_tail", "stderr_tail")}
        row.update(verification=fields.get("verification") or [], tool_calls=fields.get("tool_calls") or [],
                   tokens=fields.get("tokens") or {}, run_id=run_id, step_id=step_id, attempt=attempt)
        with self.db.guard:
            self.db.attempts[(run_id, step_id, attempt)] = row

    def attempts(self, run_id: str) -> list[dict[str, Any]]:
        with self.db.guard:
            rows = [_copy(r) for k, r in self.db.attempts.items() if k[0] == run_id]
        return sorted(rows, key=lambda r: (r["started_at"], r["step_id"], r["attempt"]))

    def append_event(self, event: Event) -> None:
        with self.db.guard:
            self.db.events.append({"seq": next(self.db.seq), "run_id": event.run, "ts": iso(event.ts),
                                   "event": event.event, "step": event.step, "attempt": event.attempt,
                                   "data": dict(event.data)})

    def events(self, run_id: str) -> list[dict[str, Any]]:
        with self.db.guard:
            return [_copy(e) for e in self.db.events if e["run_id"] == run_id]

    # the ledger
    def last_tick(self, workflow: str) -> tuple[str, str] | None:
        with self.db.guard:
            row = self.db.schedules.get(workflow)
            return (row["first_tick"], row["last_tick"]) if row else None

    def record_tick(self, workflow: str, now: datetime) -> None:
        stamp = iso(now)
        with self.db.guard:
            row = self.db.schedules.setdefault(workflow, {"first_tick": stamp, "last_tick": stamp})
            row["last_tick"] = max(row["last_tick"], stamp)

    def runs_started_before(self, before: datetime) -> list[str]:
        with self.db.guard:
            rows = sorted(self.db.runs.values(), key=lambda r: r["started_at"])
            return [r["id"] for r in rows if r["started_at"] < iso(before)]

    def runs_still_read(self) -> set[str]:
        with self.db.guard:
            newest: dict[str, dict[str, Any]] = {}
            for run in self.db.runs.values():
                if run["workflow"] not in newest or run["started_at"] > newest[run["workflow"]]["started_at"]:
                    newest[run["workflow"]] = run
            kept = {r["id"] for r in newest.values()}
            last: dict[str, dict[str, Any]] = {}
            for slot in self.db.slots.values():
                if slot["run_id"] and slot["outcome"] is None:
                    kept.add(slot["run_id"])
                if slot["outcome"] is not None and (slot["workflow"] not in last or slot["slot"] > last[slot["workflow"]]["slot"]):
                    last[slot["workflow"]] = slot
            return kept | {s["run_id"] for s in last.values() if s["run_id"]}

    def delete_runs(self, run_ids: Sequence[str]) -> None:
        gone = set(run_ids)
        with self.db.guard:
            for run_id in gone:
                self.db.runs.pop(run_id, None)
            self.db.steps = {k: v for k, v in self.db.steps.items() if k[0] not in gone}
            self.db.attempts = {k: v for k, v in self.db.attempts.items() if k[0] not in gone}
            self.db.events = [e for e in self.db.events if e["run_id"] not in gone]
            self.db.approvals = {k: v for k, v in self.db.approvals.items() if k[0] not in gone}

    def record_ticks(self, workflows: Sequence[str], now: datetime) -> None:
        for name in workflows:
            self.record_tick(name, now)

    def claim_slots(self, workflow: str, decisions: Sequence[tuple[datetime, str, str | None]], *,
                    claimed_by: str, now: datetime) -> list[datetime]:
        with self.db.guard:
            won = [slot for slot, action, outcome in decisions
                   if self._insert_slot(workflow, slot, action, claimed_by, outcome, iso(now) if outcome else None)]
            self.record_tick(workflow, now)
        return won

    def _insert_slot(self, workflow: str, slot: datetime, action: str, claimed_by: str, outcome: str | None,
                     finished: str | None) -> bool:
        key = (workflow, iso(slot))
        if key in self.db.slots:
            return False
        self.db.slots[key] = {"workflow": workflow, "slot": key[1], "claimed_at": iso(utc_now()),
                              "claimed_by": claimed_by, "action": action, "run_id": None, "outcome": outcome,
                              "detail": None, "finished_at": finished}
        return True

    def claim_slot(self, workflow: str, slot: datetime, *, action: str, claimed_by: str) -> bool:
        with self.db.guard:
            return self._insert_slot(workflow, slot, action, claimed_by, None, None)

    def take_slot(self, workflow: str, slot: datetime, run_id: str) -> bool:
        with self.db.guard:
            row = self.db.slots.get((workflow, iso(slot)))
            if row is None or row["outcome"] is not None or row["run_id"] is not None:
                return False
            row["run_id"] = run_id
            return True

    def settle_slot(self, workflow: str, slot: datetime, *, outcome: str, run_id: str | None = None,
                    detail: str | None = None, only_untaken: bool = False) -> bool:
        with self.db.guard:
            row = self.db.slots.get((workflow, iso(slot)))
            if row is None or (only_untaken and (row["outcome"] is not None or row["run_id"] is not None)):
                return False
            row.update(outcome=outcome, run_id=run_id or row["run_id"], detail=detail, finished_at=iso(utc_now()))
            return True

    def _slot_rows(self, workflow: str) -> list[dict[str, Any]]:
        with self.db.guard:
            return sorted((dict(r) for (wf, _), r in self.db.slots.items() if wf == workflow), key=lambda r: r["slot"])

    def claimed_slots(self, workflow: str, *, since: datetime) -> set[datetime]:
        return {parse_iso(r["slot"]) for r in self._slot_rows(workflow) if r["slot"] > iso(since)}

    def owed_slots(self, workflow: str) -> list[dict[str, Any]]:
        return [r for r in self._slot_rows(workflow) if r["outcome"] is None and r["action"] in ("run", "queue")]

    def slots_of_run(self, run_id: str) -> list[dict[str, Any]]:
        with self.db.guard:
            return [dict(r) for r in self.db.slots.values() if r["run_id"] == run_id]

    def slots(self, workflow: str, *, limit: int = 1000) -> list[dict[str, Any]]:
        return list(reversed(self._slot_rows(workflow)))[:limit]

    # locks, schema
    # approvals
    def request_approval(self, *, run_id: str, step_id: str, workflow: str, message: str, files: str,
                         requested_at: str, expires_at: str) -> dict[str, Any]:
        with self.db.guard:
            number = 1 + max((k[2] for k in self.db.approvals if k[:2] == (run_id, step_id)), default=0)
            row = {"run_id": run_id, "step_id": step_id, "request": number, "workflow": workflow,
                   "message": message, "files": files, "requested_at": requested_at, "expires_at": expires_at,
                   "notify": None, "decision": None, "decided_by": None, "comment": None, "decided_at": None,
                   "consumed": 0}
            self.db.approvals[(run_id, step_id, number)] = row
            return _copy(row)

    def note_approval(self, run_id: str, step_id: str, request: int, notify: str) -> None:
        with self.db.guard:
            if (row := self.db.approvals.get((run_id, step_id, request))) is not None:
                row["notify"] = notify

    def approvals(self, run_id: str) -> list[dict[str, Any]]:
        with self.db.guard:
            rows = [_copy(r) for k, r in self.db.approvals.items() if k[0] == run_id]
        return sorted(rows, key=lambda r: (r["requested_at"], r["step_id"], r["request"]))

    def open_approvals(self, *, workflow: str | None = None) -> list[dict[str, Any]]:
        with self.db.guard:
            rows = [_copy(r) for r in self.db.approvals.values()
                    if not r["consumed"] and (workflow is None or r["workflow"] == workflow)
                    and self.db.runs.get(r["run_id"], {}).get("status") == "waiting"]
        return sorted(rows, key=lambda r: (r["requested_at"], r["run_id"], r["step_id"]))

    def decide_approval(self, run_id: str, step_id: str, request: int, *, decision: str, by: str,
                        comment: str | None, decided_at: str) -> bool:
        with self.db.guard:
            row = self.db.approvals.get((run_id, step_id, request))
            if row is None or row["decision"] is not None or row["consumed"]:
                return False
            row.update(decision=decision, decided_by=by, comment=comment, decided_at=decided_at)
            return True

    def consume_approval(self, run_id: str, step_id: str, request: int) -> None:
        with self.db.guard:
            if (row := self.db.approvals.get((run_id, step_id, request))) is not None:
                row["consumed"] = 1

    def waiting_runs(self, workflow: str) -> list[RunRow]:
        with self.db.guard:
            rows = sorted((r for r in self.db.runs.values() if r["workflow"] == workflow and r["status"] == "waiting"),
                          key=lambda r: r["started_at"])
        return [run for r in rows if (run := self.run(r["id"])) is not None]

    def lock(self, workflow: str, *, suffix: str = "lock") -> FakeLock:
        return FakeLock(self.db, workflow, suffix=suffix)

    def info(self) -> StoreInfo:
        with self.db.guard:
            counts = {"runs": len(self.db.runs), "steps": len(self.db.steps), "attempts": len(self.db.attempts),
                      "events": len(self.db.events), "schedules": len(self.db.schedules), "slots": len(self.db.slots)}
        return StoreInfo(self.backend, self.url, SCHEMA_VERSION, SCHEMA_VERSION, counts)

    def migrate(self) -> tuple[int | None, int]:
        return SCHEMA_VERSION, SCHEMA_VERSION


class FakeLock:
    """A lock held in the FakeDatabase; handed over by token, as the PostgreSQL lease is."""

    def __init__(self, db: FakeDatabase, workflow: str, *, suffix: str = "lock") -> None:
        self.db, self.workflow, self.name = db, workflow, f"{suffix}:{workflow}"
        self._token: str | None = None

    @property
    def held(self) -> bool:
        return self._token is not None

    @property
    def where(self) -> str:
        return f"fake lock '{self.name}'"

    def try_acquire(self, run_id: str) -> bool:
        with self.db.guard:
            if self.name in self.db.leases:
                return False
            self._token = secrets.token_hex(8)
            self.db.leases[self.name] = {"token": self._token, "run": run_id, "pid": os.getpid(), "host": host_id()}
            return True

    def acquire(self, run_id: str, *, wait: bool = False, give_up: Callable[[], bool] | None = None) -> None:
        while not self.try_acquire(run_id):
            if not wait or (give_up is not None and give_up()):
                raise Busy(self.busy_message())
            time.sleep(0.01)

    def busy_message(self) -> str:
        holder = self.holder() or {}
        return f"workflow '{self.workflow}' is busy: run {holder.get('run', '?')} holds its {self.where}"

    def name_holder(self, run_id: str) -> None:
        with self.db.guard:
            self.db.leases[self.name]["run"] = run_id

    def holder(self) -> dict[str, object] | None:
        with self.db.guard:
            row = self.db.leases.get(self.name)
            return {k: v for k, v in row.items() if k != "token"} if row else None

    def handover(self) -> LockHandover:
        assert self._token is not None, "the lock is not held"
        return LockHandover(env={FAKE_LOCK_VAR: self._token})

    def handed_to(self, pid: int) -> None:
        with self.db.guard:
            self.db.leases[self.name]["pid"] = pid
        self._token = None  # the child's now: releasing this object leaves it held

    def adopt_from(self, env: Mapping[str, str], run_id: str) -> bool:
        token = env.get(FAKE_LOCK_VAR)
        if not token:
            return False
        with self.db.guard:
            row = self.db.leases.get(self.name)
            if row is None or row["token"] != token:
                from orchestr.errors import StateError

                raise StateError(f"the {self.where} handed to this process was lost")
            row.update(run=run_id, pid=os.getpid())
        self._token = token
        return True

    def release(self) -> None:
        with self.db.guard:
            if self._token is not None and self.db.leases.get(self.name, {}).get("token") == self._token:
                del self.db.leases[self.name]
        self._token = None

    def __enter__(self) -> FakeLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
