"""Verify drafted refunds against the refund policy: exit 0 when every refund may be applied.

Used as a `command:` check by the support-refunds workflow, so "within policy" is something the
file proves before a person is asked, not something the model says:
- every refund answers a fetched ticket, once;
- no refund is above the limit (policy section 4: anything above 500 EUR needs finance);
- every refund cites a policy section.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

LIMIT_EUR = 500.0


def problems(tickets_doc: dict[str, Any], refunds_doc: dict[str, Any], *, limit: float = LIMIT_EUR) -> list[str]:
    fetched = {t["id"] for t in tickets_doc["tickets"]}
    found = []
    for ticket, count in sorted(Counter(r["ticket"] for r in refunds_doc["refunds"]).items()):
        if count > 1:
            found.append(f"{ticket} is refunded {count} times")
    for refund in refunds_doc["refunds"]:
        ticket, amount = refund["ticket"], float(refund["amount_eur"])
        if ticket not in fetched:
            found.append(f"{ticket} is not among the fetched tickets")
        if amount > limit:
            found.append(f"{ticket}: {amount:.2f} EUR is above the {limit:.0f} EUR limit; finance must approve it")
        if amount <= 0:
            found.append(f"{ticket}: a refund must be a positive amount, got {amount}")
        if not refund.get("policy_section"):
            found.append(f"{ticket}: cites no policy section")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tickets", type=Path)
    parser.add_argument("refunds", type=Path)
    parser.add_argument("--limit", type=float, default=LIMIT_EUR, help="the highest refund in EUR (default 500)")
    args = parser.parse_args()
    found = problems(json.loads(args.tickets.read_text()), json.loads(args.refunds.read_text()), limit=args.limit)
    for problem in found:
        print(problem, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
