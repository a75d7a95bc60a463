"""Schedules: cron slots in a time zone (`slots`), the tick's catch-up and overlap policy
(`policy`), and units for the host's scheduler (`export`). Pure functions; the ledger lives in
`orchestr.store` and the tick that applies the policy in `orchestr.tick`."""
