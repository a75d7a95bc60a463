"""The one table every benchmark prints: what, the figure, and the goal (or what it is relative to)."""

from __future__ import annotations

from collections.abc import Sequence


def print_table(title: str, rows: Sequence[tuple[str, str, str]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for column in ("what", "measured", "goal / relative"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
