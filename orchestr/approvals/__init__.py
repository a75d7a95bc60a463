"""Approvals: an agent proposes, a person decides, a deterministic step applies (docs/approvals.md).

    records.py  the durable requests and decisions (a table beside the run records)
    files.py    what the approver is shown: content hashes, copies, pretty JSON and diffs
    step.py     the `approval:` step runner: asks, or reads the decision on resume
    resume.py   resuming a decided run, from `approve` or from the next `tick`
    views.py    Rich renderings for `orchestr approvals`
"""
