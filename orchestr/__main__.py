"""`python -m orchestr`: the same CLI (used by `orchestr tick` to start scheduled runs)."""

from orchestr.cli import main

main()
