"""The command line: the composition root and the one place errors become exit codes.

Each command lives in its own module and imports the core lazily, so `orchestr --help` stays fast
and no provider SDK is imported unless a model is actually called.
"""

from __future__ import annotations

from orchestr.cli.app import app, main

__all__ = ["app", "main"]
