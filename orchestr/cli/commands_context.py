"""`orchestr context tree` and `orchestr context show NODE`"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from orchestr.cli.common import Format, console, handle_errors, print_json, project

if TYPE_CHECKING:
    from collections.abc import Mapping

    from orchestr.context import ContextNode, ContextTree
    from orchestr.models import McpServerSpec
    from orchestr.permissions import EffectivePermissions
    from orchestr.reach import ServerRow

context_app = typer.Typer(help="The context tree: what every agent step is told, and allowed.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(context_app, name="context")


@context_app.command("tree")
@handle_errors
def tree(format: Annotated[Format, typer.Option("--format")] = Format.text) -> None:
    """Show the context tree."""
    loaded = project().tree
    if format is Format.json:
        print_json(_tree_json(loaded, None))
        return
    import os
    import sys

    color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
    typer.echo("\n".join(tree_lines(loaded, color=color)))


def tree_lines(tree: ContextTree, *, color: bool) -> list[str]:
    """The tree as text lines with Rich's guides (├── └── │), one pass over the nodes.

    Plain strings, not a Rich Tree: rendering 5,000 nodes through Rich took seconds.
    """
    def styled(text: str, **style: object) -> str:
        return typer.style(text, **style) if color else text  # type: ignore[arg-type]

    lines = [styled("contexts/", bold=True)]
    stack: list[tuple[str, ContextNode, bool]] = [("", node, False) for node in reversed(tree.children(None))]
    if stack:
        stack[0] = (*stack[0][:2], True)
    while stack:
        prefix, node, last = stack.pop()
        label = styled(node.id.rpartition("/")[2], bold=True, fg="cyan") + "  " + node.spec.title
        if node.spec.rules:
            count = len(node.spec.rules)
            label += styled(f"  ({count} rule{'s' if count != 1 else ''})", dim=True)
        lines.append(prefix + ("└── " if last else "├── ") + label)
        children = tree.children(node.id)
        inner = prefix + ("    " if last else "│   ")
        stack.extend((inner, child, i == 0) for i, child in enumerate(reversed(children)))
    return lines


def _tree_json(tree: ContextTree, parent: str | None) -> list[dict[str, object]]:
    from orchestr.context import NodeId

    return [
        {"id": node.id, "title": node.spec.title, "children": _tree_json(tree, node.id)}
        for node in tree.children(NodeId(parent) if parent else None)
    ]


@context_app.command("show")
@handle_errors
def show(
    node: Annotated[str, typer.Argument(help="Node id, e.g. acme/support/refunds.")],
    format: Annotated[Format, typer.Option("--format")] = Format.text,
    text_only: Annotated[bool, typer.Option("--text", help="Only the injected text, byte-exact.")] = False,
) -> None:
    """Print the exact text a node injects into agent prompts, and its effective permissions."""
    from orchestr.context import render_context
    from orchestr.permissions import EffectivePermissions

    proj = project()
    resolved = proj.tree.resolve(node)
    text = render_context(resolved, proj.root)
    permissions = EffectivePermissions(resolved.permission_levels())
    servers = _server_rows(proj.config.mcp_servers, permissions)
    if format is Format.json:
        print_json({
            "node": resolved.id,
            "chain": [n.id for n in resolved.chain],
            "text": text,
            "vars": resolved.vars,
            "rules": list(resolved.rules),
            "permissions": permissions.summary(),
            "permission_levels": permissions.describe(),
            "mcp_servers": {row.name: {"reach": row.reach.describe(), "missing": row.missing} for row in servers},
        })
        return
    typer.echo(text, nl=False)
    if not text_only:
        from orchestr.render import render_permissions, render_server_reach

        console().print(render_permissions(permissions))
        if servers:
            console().print(render_server_reach(servers))


def _server_rows(servers: Mapping[str, McpServerSpec], permissions: EffectivePermissions) -> list[ServerRow]:
    """The MCP servers whose tools this node's `tools:` allow, each with its reach and what is missing."""
    from orchestr.reach import ServerRow, reach_gaps, server_reach, servers_allowed

    rows = []
    for name in servers_allowed(permissions, servers):
        reach = server_reach(name, servers[name])
        rows.append(ServerRow(name, reach, reach_gaps(permissions, reach)))
    return rows
