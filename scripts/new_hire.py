"""Check a new hire's details and work out the onboarding dates, for the onboarding workflow.

Reads EMPLOYEE, START_DATE (YYYY-MM-DD) and LAPTOP_LEAD_DAYS from the environment; writes one
JSON object to $ORCHESTR_OUTPUT: the file slug and the deadlines, counted in business days, so
the agent is handed dates rather than asked to do calendar arithmetic.
"""

from __future__ import annotations

import json
import os
import re
import sys
import unicodedata
from datetime import date, timedelta


def business_days_before(day: date, count: int) -> date:
    while count > 0:
        day -= timedelta(days=1)
        if day.weekday() < 5:
            count -= 1
    return day


def slug(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")


def main() -> int:
    name = os.environ.get("EMPLOYEE", "").strip()
    if not slug(name):
        print("EMPLOYEE must be a name, e.g. -i employee='Jane Doe'", file=sys.stderr)
        return 2
    try:
        start = date.fromisoformat(os.environ.get("START_DATE", ""))
    except ValueError:
        print("START_DATE must be a date as YYYY-MM-DD, e.g. -i start_date=2025-04-01", file=sys.stderr)
        return 2
    if start.weekday() >= 5:
        print(f"{start} is a {start:%A}: a start date must be a working day", file=sys.stderr)
        return 2
    lead = int(os.environ.get("LAPTOP_LEAD_DAYS", "10"))
    dates = {
        "slug": slug(name),
        "start_date": start.isoformat(),
        "start_weekday": f"{start:%A}",
        "it_request_by": business_days_before(start, lead).isoformat(),
        "welcome_email_by": business_days_before(start, 5).isoformat(),
        "buddy_by": business_days_before(start, 5).isoformat(),
        "plan_agreed_by": (start + timedelta(days=4 - start.weekday())).isoformat(),
        "day_30": (start + timedelta(days=30)).isoformat(),
    }
    with open(os.environ["ORCHESTR_OUTPUT"], "w", encoding="utf-8") as handle:
        json.dump(dates, handle)
    print(f"{name}: starts {dates['start_weekday']} {start}; IT request due {dates['it_request_by']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
