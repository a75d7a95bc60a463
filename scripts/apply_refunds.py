"""Apply approved refunds: the deterministic step after a person approved the draft.

A stand-in for the finance system's refund API: each refund is appended once to
out/support/refunds/applied.jsonl (a ticket already applied is skipped, so a retried or resumed
run never pays twice). It re-checks the limit itself: what it applies must be within policy
whatever happened upstream.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

LEDGER = Path("out/support/refunds/applied.jsonl")
LIMIT_EUR = 500.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("refunds", type=Path)
    args = parser.parse_args()
    refunds = json.loads(args.refunds.read_text())["refunds"]
    over = [r["ticket"] for r in refunds if float(r["amount_eur"]) > LIMIT_EUR]
    if over:
        print(f"refusing to apply: {', '.join(over)} above {LIMIT_EUR:.0f} EUR", file=sys.stderr)
        return 1
    done = {json.loads(line)["ticket"] for line in LEDGER.read_text().splitlines()} if LEDGER.exists() else set()
    LEDGER.parent.mkdir(parents=True, exist_ok=True)
    applied = 0
    with LEDGER.open("a", encoding="utf-8") as ledger:
        for refund in refunds:
            if refund["ticket"] in done:
                continue
            ledger.write(json.dumps(refund, ensure_ascii=False) + "\n")
            applied += 1
            print(f"refunded {refund['amount_eur']:.2f} EUR to {refund['customer']} ({refund['ticket']})")
    print(f"applied={applied}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
