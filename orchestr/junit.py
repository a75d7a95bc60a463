"""`--junit FILE`: one testcase per step; failed and unverified are failures, skipped is skipped."""

from __future__ import annotations

import contextlib
import os
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from orchestr.engine import RunOutcome
from orchestr.plan import Plan


def junit_xml(plan: Plan, run_id: str, outcome: RunOutcome) -> bytes:
    states = outcome.steps
    failures = sum(1 for s in states.values() if s.status in ("failed", "unverified", "cancelled"))
    skipped = sum(1 for s in states.values() if s.status in ("skipped", "pending", "waiting"))
    total_time = sum(s.duration for s in states.values())
    suites = ET.Element("testsuites", name="orchestr", tests=str(len(states)), failures=str(failures),
                        errors="0", skipped=str(skipped), time=f"{total_time:.3f}")
    suite = ET.SubElement(suites, "testsuite", name=plan.workflow, tests=str(len(states)), failures=str(failures),
                          errors="0", skipped=str(skipped), time=f"{total_time:.3f}")
    ET.SubElement(ET.SubElement(suite, "properties"), "property", name="run", value=run_id)
    for step_id, state in states.items():
        case = ET.SubElement(suite, "testcase", classname=plan.workflow, name=step_id, time=f"{state.duration:.3f}")
        if state.status in ("failed", "unverified", "cancelled"):
            failure = ET.SubElement(case, "failure", message=f"{state.status}: {state.reason or ''}"[:1000],
                                    type=state.status)
            failure.text = "\n".join(f"{c.check} {c.target}: {'passed' if c.passed else 'FAILED'} - {c.detail}"
                                     for c in state.verification) or (state.reason or "")
        elif state.status in ("skipped", "pending", "waiting"):  # waiting: not decided yet
            ET.SubElement(case, "skipped", message=state.reason or "not run")
    ET.indent(suites)
    return bytes(ET.tostring(suites, encoding="utf-8", xml_declaration=True))


def write_junit(path: Path, plan: Plan, run_id: str, outcome: RunOutcome) -> None:
    """Written atomically: a CI system never reads half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(junit_xml(plan, run_id, outcome))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
