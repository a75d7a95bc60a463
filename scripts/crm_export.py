"""Export the open sales pipeline from the CRM to out/sales/pipeline.csv.

A stand-in for the CRM's export API (crm.acme.example): it reads the sample opportunities in
data/sales/crm-opportunities.csv, whose dates are kept relative (days from now), and writes them
with calendar dates as of today, so the sample pipeline always looks current.

Writes `open_deals=N` and `open_amount_usd=N` to $ORCHESTR_OUTPUT.
"""

from __future__ import annotations

import argparse
import csv
import os
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

CLOSED = ("closed_won", "closed_lost")
FIELDS = ["id", "account", "owner", "stage", "amount_usd", "close_date", "last_activity"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="data/sales/crm-opportunities.csv", type=Path)
    parser.add_argument("--out", default="out/sales/pipeline.csv", type=Path)
    parser.add_argument("--as-of", type=date.fromisoformat,
                        default=datetime.now(ZoneInfo("America/New_York")).date(),
                        help="the export date (default: today in New York)")
    args = parser.parse_args()

    with args.source.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({
                "id": row["id"], "account": row["account"], "owner": row["owner"], "stage": row["stage"],
                "amount_usd": row["amount_usd"],
                "close_date": (args.as_of + timedelta(days=int(row["close_in_days"]))).isoformat(),
                "last_activity": (args.as_of - timedelta(days=int(row["last_activity_days_ago"]))).isoformat(),
            })
    open_rows = [r for r in rows if r["stage"] not in CLOSED]
    amount = sum(int(r["amount_usd"]) for r in open_rows)
    print(f"exported {len(rows)} opportunities ({len(open_rows)} open, {amount:,} USD) as of {args.as_of} to {args.out}")

    output = os.environ.get("ORCHESTR_OUTPUT")
    if output:
        with open(output, "a", encoding="utf-8") as handle:
            handle.write(f"open_deals={len(open_rows)}\nopen_amount_usd={amount}\nas_of={args.as_of}\n")


if __name__ == "__main__":
    main()
