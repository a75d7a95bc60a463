"""Pipeline statistics from a CRM export: per stage, weighted, this quarter, and deals at risk.

    python3 scripts/pipeline_stats.py out/sales/pipeline.csv [--as-of 2025-03-11]

The numbers a pipeline report quotes come from here, not from a model's arithmetic. Stage
weightings are those of knowledge/sales/pipeline-stages.md.
"""

from __future__ import annotations

import argparse
import csv
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

WEIGHTS = {"qualify": 0.10, "solution": 0.25, "proposal": 0.50, "negotiation": 0.75,
           "closed_won": 1.0, "closed_lost": 0.0}
OPEN = ("qualify", "solution", "proposal", "negotiation")
STALE_DAYS = 14


def quarter_end(day: date) -> date:
    month = ((day.month - 1) // 3 + 1) * 3
    following = date(day.year + (month == 12), month % 12 + 1, 1)
    return date.fromordinal(following.toordinal() - 1)


def risk(row: dict[str, str], as_of: date) -> str | None:
    reasons = []
    if date.fromisoformat(row["close_date"]) < as_of:
        reasons.append(f"close date {row['close_date']} has passed")
    idle = (as_of - date.fromisoformat(row["last_activity"])).days
    if idle >= STALE_DAYS:
        reasons.append(f"no activity for {idle} days")
    return "; ".join(reasons) or None


def report(rows: list[dict[str, str]], as_of: date) -> str:
    lines = [f"as of {as_of} (quarter ends {quarter_end(as_of)})", "",
             f"{'stage':<12} {'deals':>5} {'amount_usd':>12} {'weighted_usd':>13}"]
    for stage, weight in WEIGHTS.items():
        deals = [r for r in rows if r["stage"] == stage]
        amount = sum(int(r["amount_usd"]) for r in deals)
        lines.append(f"{stage:<12} {len(deals):>5} {amount:>12,} {round(amount * weight):>13,}")
    open_rows = [r for r in rows if r["stage"] in OPEN]
    total = sum(int(r["amount_usd"]) for r in open_rows)
    weighted = sum(int(r["amount_usd"]) * WEIGHTS[r["stage"]] for r in open_rows)
    end = quarter_end(as_of)
    this_quarter = [r for r in open_rows if as_of <= date.fromisoformat(r["close_date"]) <= end]
    commit = sum(int(r["amount_usd"]) for r in this_quarter if r["stage"] == "negotiation")
    won = sum(int(r["amount_usd"]) for r in rows if r["stage"] == "closed_won")
    lines += ["", f"open pipeline: {len(open_rows)} deals, {total:,} USD; weighted {round(weighted):,} USD",
              f"closing this quarter: {len(this_quarter)} deals, {sum(int(r['amount_usd']) for r in this_quarter):,} USD",
              f"commit (negotiation, closing this quarter): {commit:,} USD",
              f"closed won: {won:,} USD", "", f"at risk (close date passed or no activity for {STALE_DAYS}+ days):"]
    at_risk = [(r, risk(r, as_of)) for r in open_rows]
    lines += [f"  {r['id']}  {r['account']}  {r['stage']}  {int(r['amount_usd']):,} USD  owner {r['owner']}: {why}"
              for r, why in at_risk if why] or ["  none"]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", type=Path)
    parser.add_argument("--as-of", type=date.fromisoformat,
                        default=datetime.now(ZoneInfo("America/New_York")).date())
    args = parser.parse_args()
    with args.csv.open(newline="", encoding="utf-8") as handle:
        print(report(list(csv.DictReader(handle)), args.as_of))


if __name__ == "__main__":
    main()
