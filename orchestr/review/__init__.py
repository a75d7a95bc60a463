"""Review: what a change does to the agents (`orchestr impact`) and what they are given (`orchestr.lock`).

    snapshot.py   a project as compiled plans: the working tree, or a git REF read from git objects
    effective.py  per step: the effective prompt, permissions, tools, model, MCP servers, checks
    impact.py     two snapshots -> the steps whose effective behaviour changed
    report.py     an Impact as text, markdown (PR comments) or JSON (CI)
    lockfile.py   orchestr.lock: write, check, and the check `run` makes before it starts
"""
