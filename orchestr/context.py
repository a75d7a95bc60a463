"""The context tree: one node per file under `contexts/`, folders for children.

A node's chain (root first) is rendered into every agent prompt as byte-identical text for an
identical chain: rules accumulate, vars are overridden by children, permissions intersect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import NewType

from orchestr.errors import Diagnostic, Span, ValidationFailed, did_you_mean
from orchestr.governance import Governance, check_write_globs
from orchestr.models import PERMISSION_KEYS, ContextNodeSpec, Permissions, Scalar
from orchestr.permissions import PathDenied, PermissionLevel, resolve_in_root, subsumes
from orchestr.source import Document, load_yaml
from orchestr.spec import decode

NodeId = NewType("NodeId", str)
MAX_FILE_BYTES = 64_000
CONTEXTS_DIR = "contexts"


@dataclass(frozen=True)
class ContextNode:
    id: NodeId
    spec: ContextNodeSpec
    doc: Document

    @property
    def parent(self) -> NodeId | None:
        head, _, _ = self.id.rpartition("/")
        return NodeId(head) if head else None


@dataclass(frozen=True)
class ResolvedContext:
    """A node's chain, root first, and what it adds up to."""

    chain: tuple[ContextNode, ...]

    @property
    def id(self) -> NodeId:
        return self.chain[-1].id

    @property
    def rules(self) -> tuple[str, ...]:
        return tuple(rule for node in self.chain for rule in node.spec.rules)

    @property
    def vars(self) -> dict[str, Scalar]:
        merged: dict[str, Scalar] = {}
        for node in self.chain:
            merged.update(node.spec.vars)
        return merged

    def permission_levels(self) -> tuple[PermissionLevel, ...]:
        return tuple(
            permission_level(f"context {node.id}", node.spec.permissions) for node in self.chain
        )


def permission_level(source: str, permissions: Permissions) -> PermissionLevel:
    return PermissionLevel(
        source=source,
        tools=permissions.tools,
        read=permissions.read,
        write=permissions.write,
        commands=permissions.commands,
        hosts=permissions.hosts,
    )


@dataclass(frozen=True)
class ContextTree:
    root: Path
    nodes: Mapping[NodeId, ContextNode]

    def resolve(self, node_id: str, *, span: Span | None = None) -> ResolvedContext:
        """The chain of `node_id`, root first; ValidationFailed naming near misses."""
        if node_id not in self.nodes:
            raise ValidationFailed([self.unknown(node_id, span)])
        chain: list[ContextNode] = []
        current: NodeId | None = NodeId(node_id)
        while current is not None:
            node = self.nodes[current]
            chain.append(node)
            current = node.parent
        return ResolvedContext(tuple(reversed(chain)))

    def unknown(self, node_id: str, span: Span | None) -> Diagnostic:
        suggestion = did_you_mean(node_id, set(self.nodes))
        where = span or Span(CONTEXTS_DIR)
        return Diagnostic(
            where,
            f"unknown context '{node_id}'" + (f"; {suggestion}" if suggestion else ""),
            hint=f"create {CONTEXTS_DIR}/{node_id}.yaml or use one of: {', '.join(sorted(self.nodes)) or '(none)'}",
        )

    def children(self, node_id: NodeId | None) -> list[ContextNode]:
        """A node's children (None: the top-level nodes), sorted by id; O(children) per call."""
        return list(self._children.get(node_id, ()))

    @cached_property
    def _children(self) -> dict[NodeId | None, tuple[ContextNode, ...]]:
        """Every node's children, built once with one sort and one pass: a whole tree walk is
        O(n log n), where scanning every node for each node was O(n^2)."""
        index: dict[NodeId | None, list[ContextNode]] = {}
        for node_id in sorted(self.nodes):
            node = self.nodes[node_id]
            index.setdefault(node.parent, []).append(node)
        return {parent: tuple(nodes) for parent, nodes in index.items()}


def load_tree(root: Path, *, display_root: str = "", governance: Governance | None = None) -> ContextTree:
    """Load every node under `root/contexts`; ValidationFailed lists every problem found."""
    governance = governance or Governance.for_state_dir()
    base = root / CONTEXTS_DIR
    nodes: dict[NodeId, ContextNode] = {}
    broken: set[NodeId] = set()
    problems: list[Diagnostic] = []
    files = sorted([*base.rglob("*.yaml"), *base.rglob("*.yml")]) if base.is_dir() else []
    seen: dict[NodeId, str] = {}
    for path in files:
        node_id = NodeId(path.relative_to(base).with_suffix("").as_posix())
        display = f"{display_root}{CONTEXTS_DIR}/{path.relative_to(base).as_posix()}"
        if node_id in seen:
            problems.append(_twin(node_id, seen[node_id], display))
            continue
        seen[node_id] = display
        outside = _outside(root, path, display)
        if outside is not None:
            broken.add(node_id)
            problems.append(outside)
            continue
        try:
            doc = load_yaml(path, display=display)
            nodes[node_id] = ContextNode(node_id, decode(doc, ContextNodeSpec, what="context node"), doc)
        except ValidationFailed as exc:
            broken.add(node_id)
            problems.extend(exc.diagnostics)
    tree = ContextTree(root, nodes)
    for node in nodes.values():
        problems.extend(_node_problems(tree, node, broken))
        problems.extend(_governance_writes(node, governance))
    if problems:
        raise ValidationFailed(problems)
    return tree


def _outside(root: Path, path: Path, display: str) -> Diagnostic | None:
    """A node file (or a folder on its way) that is a symlink out of the project: its text would
    reach a model, so it is held to the rules of `files:`."""
    if not path.is_symlink() and not any(p.is_symlink() for p in path.relative_to(root).parents if p != Path(".")):
        return None
    real, base = path.resolve(), root.resolve()
    if real == base or base in real.parents:
        return None
    return Diagnostic(Span(display, 1, 1), f"context node file {display} is a symlink to {real}, outside the project",
                      hint="copy the file into contexts/ instead of linking to it")


def _twin(node_id: NodeId, first: str, display: str) -> Diagnostic:
    """`x.yaml` and `x.yml` are both node `x`: which one is meant cannot be told, so neither wins."""
    return Diagnostic(
        Span(display, 1, 1),
        f"context '{node_id}' is defined twice: by {first} and by this file",
        hint="keep one of the two files (merge them, or delete or rename the other)",
    )


def _node_problems(tree: ContextTree, node: ContextNode, broken: set[NodeId]) -> list[Diagnostic]:
    """A node's own problems; an ancestor whose file exists but is invalid reports its own."""
    problems: list[Diagnostic] = []
    parent = node.parent
    if parent is not None and parent not in tree.nodes and parent not in broken:
        problems.append(
            Diagnostic(
                node.doc.span(),
                f"context '{node.id}' has no parent: {CONTEXTS_DIR}/{parent}.yaml does not exist",
                hint=f"create {CONTEXTS_DIR}/{parent}.yaml (with at least `title:`) or move this file",
            )
        )
    for i, name in enumerate(node.spec.files):
        problems.extend(_file_problem(tree.root, name, node.doc.span(("files", i))))
    if not problems and all(ancestor in tree.nodes for ancestor in _ancestors(node.id)):
        problems.extend(_widening(tree, node))
    return problems


def _governance_writes(node: ContextNode, governance: Governance) -> list[Diagnostic]:
    """No context may let an agent write the files that govern it (orchestr.governance)."""
    write = node.spec.permissions.write or ()
    return [Diagnostic(node.doc.span(("permissions", "write", i)),
                       f"permissions.write lists '{write[i]}', which covers a governance path", hint=hint)
            for i, hint in check_write_globs(write, governance)]


def _ancestors(node_id: NodeId) -> list[NodeId]:
    parts = node_id.split("/")
    return [NodeId("/".join(parts[:n])) for n in range(1, len(parts))]


def _file_problem(root: Path, name: str, span: Span) -> list[Diagnostic]:
    problem = project_file_problem(root, name, span)
    if problem is not None:
        return [problem]
    if (root / name).stat().st_size > MAX_FILE_BYTES:
        return [Diagnostic(span, f"file '{name}' is larger than {MAX_FILE_BYTES} bytes", hint="attach a summary instead")]
    return []


def project_file_problem(root: Path, name: str, span: Span, *, must_exist: bool = True) -> Diagnostic | None:
    """A `files:` entry must name a file inside the project: its text goes to a model, and the
    project is what a reviewer sees (an absolute path or `..` would reach past it)."""
    try:
        resolve_in_root(root, name)
    except PathDenied as exc:
        return Diagnostic(span, f"file {exc}", hint="write a path relative to the project root, e.g. docs/policy.md;"
                          " copy a linked file into the project")
    path = root / name
    if must_exist and not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        return Diagnostic(span, f"file '{name}' {what}", hint="paths are relative to the project root")
    return None


def _widening(tree: ContextTree, node: ContextNode) -> list[Diagnostic]:
    """A child listing what no ancestor allows is an error: permissions only narrow going down.

    Such an entry could never take effect (every level must allow an action), so it would only
    mislead whoever reviews the file into thinking the agent may do it.
    """
    ancestors = tree.resolve(node.id).chain[:-1]
    problems = []
    for key in PERMISSION_KEYS:
        for i, pattern in enumerate(getattr(node.spec.permissions, key) or ()):
            for ancestor in ancestors:
                allowed = getattr(ancestor.spec.permissions, key)
                if allowed is not None and not subsumes(allowed, pattern, key):
                    problems.append(
                        Diagnostic(
                            node.doc.span(("permissions", key, i)),
                            f"permissions.{key} lists '{pattern}', which ancestor '{ancestor.id}' does not allow "
                            f"({', '.join(allowed) or 'nothing'}); permissions only narrow going down the tree",
                            hint=f"remove it, or allow it in {CONTEXTS_DIR}/{ancestor.id}.yaml first",
                        )
                    )
                    break
    return problems


def render_context(context: ResolvedContext, root: Path) -> str:
    """The exact text injected into an agent's prompt: deterministic for the same chain."""
    parts = [
        f'<context node="{context.id}">',
        "You work inside this organisation context, inherited root first. "
        "Every rule from every level applies; a rule from an upper level cannot be dropped.",
    ]
    for node in context.chain:
        parts.append(_render_node(node, root))
    variables = context.vars
    if variables:
        parts.append("## Variables in effect\n" + "\n".join(f"- {k}: {_scalar(v)}" for k, v in sorted(variables.items())))
    rules = context.rules
    if rules:
        parts.append("## All rules in force\n" + "\n".join(f"{i}. {r}" for i, r in enumerate(rules, 1)))
    parts.append("</context>")
    return "\n\n".join(parts) + "\n"


def _scalar(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _render_node(node: ContextNode, root: Path) -> str:
    spec = node.spec
    lines = [f"## {node.id}: {spec.title}"]
    if spec.description.strip():
        lines.append(spec.description.strip())
    if spec.facts:
        lines.append("Facts:\n" + "\n".join(f"- {f}" for f in spec.facts))
    if spec.rules:
        lines.append("Rules:\n" + "\n".join(f"- {r}" for r in spec.rules))
    for name in spec.files:
        lines.append(f'<file path="{name}">\n{_read_limited(root / name)}\n</file>')
    return "\n\n".join(lines)


def _read_limited(path: Path) -> str:
    data = path.read_bytes()[:MAX_FILE_BYTES]
    return data.decode("utf-8", errors="replace").rstrip("\n")
