"""Verify a triage against the tickets it was given: exit 0 when it is complete and consistent.

Used as a `command:` check by the support-triage workflow, so that "I triaged everything" is
something the file proves, not something the model says:
- every fetched ticket is triaged exactly once, and nothing else is;
- a ticket is marked urgent exactly when its severity is sev1 (the severity matrix's rule).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def problems(tickets_doc: dict[str, Any], triage_doc: dict[str, Any]) -> list[str]:
    fetched = [t["id"] for t in tickets_doc["tickets"]]
    triaged = [t["id"] for t in triage_doc["tickets"]]
    found = []
    for ticket_id in sorted(set(fetched) - set(triaged)):
        found.append(f"{ticket_id} was fetched but not triaged")
    for ticket_id in sorted(set(triaged) - set(fetched)):
        found.append(f"{ticket_id} was triaged but is not among the fetched tickets")
    for ticket_id, count in sorted(Counter(triaged).items()):
        if count > 1:
            found.append(f"{ticket_id} is triaged {count} times")
    for entry in triage_doc["tickets"]:
        if entry["urgent"] != (entry["severity"] == "sev1"):
            found.append(f"{entry['id']}: urgent must be true exactly when severity is sev1")
    return found


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: check_triage.py TICKETS_JSON TRIAGE_JSON", file=sys.stderr)
        return 2
    tickets_doc, triage_doc = (json.loads(Path(p).read_text(encoding="utf-8")) for p in sys.argv[1:])
    found = problems(tickets_doc, triage_doc)
    for problem in found:
        print(problem, file=sys.stderr)
    if not found:
        print(f"{len(triage_doc['tickets'])} tickets triaged, none missing")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
