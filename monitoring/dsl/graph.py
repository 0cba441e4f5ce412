"""Rendering of the evaluation graph: a text listing, or Graphviz ``dot``.

Each unique IR node is printed once with an id (``n7``); nodes used by more than
one rule are marked as shared, which shows how much work common sub-expression
elimination saves. Recording rules whose output another rule reads appear as
edges from the rule to the selector that reads it.
"""

from __future__ import annotations

from monitoring.dsl import ir
from monitoring.dsl.compiler import Program

_KINDS = {
    ir.Const: "const", ir.StringConst: "string", ir.Selector: "select",
    ir.RangeSelector: "range", ir.Subquery: "subquery", ir.Call: "call",
    ir.Aggregate: "aggregate", ir.Binary: "binary", ir.Neg: "negate", ir.Weighted: "weighted",
}


def _listed(program: Program) -> list[ir.Node]:
    # Constants are printed inline where they are used, not as nodes of their own.
    return [n for n in program.nodes if not isinstance(n, ir.Const | ir.StringConst)]


def node_ids(program: Program) -> dict[ir.Node, str]:
    """Stable ids in topological order (constants have none: they are shown inline)."""
    return {node: f"n{i + 1}" for i, node in enumerate(_listed(program))}


def _record_edges(program: Program, ids: dict[ir.Node, str]) -> list[tuple[str, str]]:
    records = {r.name: r for r in program.rules if r.kind == "record"}
    edges = []
    for node in _listed(program):
        if isinstance(node, ir.Selector) and node.metric in records:
            edges.append((records[node.metric].qualified_name, ids[node]))
    return edges


def render_text(program: Program) -> str:
    """A listing: nodes (inputs first), then rules and their roots."""
    ids = node_ids(program)
    users = program.users()
    listed = _listed(program)
    shared = sum(1 for n in listed if len(users.get(n, ())) > 1)
    lines = [
        f"evaluation graph: {len(program.rules)} rules, {len(listed)} unique nodes, "
        f"{shared} shared by more than one rule",
        "",
        "nodes:",
    ]
    width = max((len(ir.describe(n, _children_only(n, ids))) for n in listed), default=0)
    width = min(width, 72)
    for node in listed:
        text = ir.describe(node, _children_only(node, ids))
        used = users.get(node, [])
        mark = f"  shared by {len(used)} rules" if len(used) > 1 else ""
        lines.append(f"  {ids[node]:>5}  {_KINDS.get(type(node), '?'):<9} "
                     f"{text:<{width}}  {node.type}{mark}")
    lines += ["", "rules:"]
    for rule in program.rules:
        extra = f"  recover {ids[rule.recover]}" if rule.recover is not None else ""
        lines.append(f"  {rule.kind:<6} {rule.qualified_name}  every {rule.interval_ms // 1000}s"
                     f"  {'when' if rule.kind == 'alert' else 'expr'} {ids[rule.condition]}{extra}")
    edges = _record_edges(program, ids)
    if edges:
        lines += ["", "recording rule outputs read by other rules:"]
        lines += [f"  {src} -> {dst}" for src, dst in edges]
    return "\n".join(lines) + "\n"


def _children_only(node: ir.Node, ids: dict[ir.Node, str]) -> dict[ir.Node, str]:
    # Children are referenced by id; the node itself is described in full.
    return {c: ids[c] for c in node.children() if c in ids}


def render_dot(program: Program) -> str:
    """The graph in Graphviz ``dot``: an edge from every input to its consumer."""
    ids = node_ids(program)
    out = ["digraph evaluation {", "  rankdir=LR;", '  node [shape=box, fontname="monospace"];']
    for node in _listed(program):
        label = ir.describe(node, _children_only(node, ids))
        out.append(f"  {ids[node]} [label={_dot_string(ids[node] + ': ' + label)}];")
        for child in node.children():
            if child in ids:
                out.append(f"  {ids[child]} -> {ids[node]};")
    for i, rule in enumerate(program.rules):
        rid = f"r{i + 1}"
        shape = "octagon" if rule.kind == "alert" else "cds"
        out.append(f"  {rid} [shape={shape}, style=bold, "
                   f"label={_dot_string(rule.kind + ' ' + rule.qualified_name)}];")
        out.append(f"  {ids[rule.condition]} -> {rid};")
        if rule.recover is not None:
            out.append(f'  {ids[rule.recover]} -> {rid} [style=dashed, label="recover"];')
    rule_ids = {r.qualified_name: f"r{i + 1}" for i, r in enumerate(program.rules)}
    for src, dst in _record_edges(program, ids):
        out.append(f'  {rule_ids[src]} -> {dst} [style=dotted, label="records"];')
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
