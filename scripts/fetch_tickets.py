"""Fetch new helpdesk tickets into out/support/tickets.json for triage.

A stand-in for the helpdesk API (helpdesk.acme.example): it reads the export in
data/support/helpdesk-export.json, keeps the tickets with status `new` created within `--since`
before the export was taken, and writes them sorted by creation time. The output is a pure
function of the export, so a recorded triage replays against it byte for byte.

Writes `count=N` to $ORCHESTR_OUTPUT for the workflow's conditions.
"""

from __future__ import annotations

import argparse
import json
import os
import re
from datetime import datetime, timedelta
from pathlib import Path

UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str) -> timedelta:
    match = re.fullmatch(r"(\d+)([mhd])", text.strip())
    if not match:
        raise SystemExit(f"--since {text!r}: write a number and a unit, like 30m, 1h or 2d")
    return timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


def parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--since", default="1h", help="how far back to look (30m, 1h, 2d)")
    parser.add_argument("--export", default="data/support/helpdesk-export.json", type=Path)
    parser.add_argument("--out", default="out/support/tickets.json", type=Path)
    args = parser.parse_args()

    export = json.loads(args.export.read_text(encoding="utf-8"))
    until = parse_time(export["exported_at"])
    since = until - parse_since(args.since)
    tickets = sorted(
        (t for t in export["tickets"] if t["status"] == "new" and parse_time(t["created_at"]) >= since),
        key=lambda t: (t["created_at"], t["id"]),
    )
    document = {"source": export["source"], "window": {"from": since.isoformat(), "until": until.isoformat()},
                "tickets": tickets}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"fetched {len(tickets)} new tickets from {export['source']} into {args.out}")

    output = os.environ.get("ORCHESTR_OUTPUT")
    if output:
        with open(output, "a", encoding="utf-8") as handle:
            handle.write(f"count={len(tickets)}\n")


if __name__ == "__main__":
    main()
