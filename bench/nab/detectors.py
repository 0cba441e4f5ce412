"""The detector definitions of ``bench/nab/detectors.yml``: name, expression, thresholds.

A detector is one expression of our query language over the series ``value``
(each NAB file is its own store, so ``value`` selects exactly that file's
series), evaluated by the same evaluator users run. Its thresholds (one per
NAB profile) were chosen on the tune files only and are written in the file,
so that every run applies the same numbers to every file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.nab.corpus import NabError
from bench.nab.scorer import PROFILE_NAMES

__all__ = ["DEFAULT_DETECTORS", "Detector", "compile_detector", "load_detectors", "select"]

DEFAULT_DETECTORS = Path(__file__).resolve().parent / "detectors.yml"


@dataclass(frozen=True, slots=True)
class Detector:
    """One detector: its expression and, once tuned, a threshold per profile."""

    name: str
    expr: str
    doc: str
    thresholds: Mapping[str, float] | None
    line: int
    """Line of the entry in the definitions file (for messages)."""


def load_detectors(path: Path = DEFAULT_DETECTORS) -> list[Detector]:
    """Read and check the definitions; every problem names ``file:line``."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise NabError(f"{path}: cannot read the detector definitions: {e.strerror or e}"
                       ) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        raise NabError(f"{where}: {getattr(e, 'problem', None) or e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("detectors"), list):
        raise NabError(f"{path}:1: expected a mapping with a list 'detectors'")
    items = _item_nodes(root)
    out: list[Detector] = []
    for k, entry in enumerate(data["detectors"]):
        line = items[k].start_mark.line + 1 if k < len(items) else 1
        out.append(_detector(entry, f"{path}:{line}", line))
    first: dict[str, int] = {}
    for d in out:
        if d.name in first:
            raise NabError(f"{path}:{d.line}: detector name {d.name!r} is already used on "
                           f"line {first[d.name]}")
        first[d.name] = d.line
    return out


def _item_nodes(root: Any) -> list[Any]:
    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "detectors" and isinstance(value, yaml.SequenceNode):
                return list(value.value)
    return []


def _detector(entry: Any, where: str, line: int) -> Detector:
    if not isinstance(entry, dict):
        raise NabError(f"{where}: a detector is a mapping with 'name' and 'expr'")
    unknown = set(entry) - {"name", "expr", "doc", "thresholds"}
    if unknown:
        raise NabError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))} "
                       "(fields: name, expr, doc, thresholds)")
    name, expr = entry.get("name"), entry.get("expr")
    if not isinstance(name, str) or not name or any(c.isspace() for c in name):
        raise NabError(f"{where}: 'name' must be a non-empty word")
    if not isinstance(expr, str) or not expr.strip():
        raise NabError(f"{where}: detector {name!r}: 'expr' must be a non-empty string")
    doc = entry.get("doc", "")
    if not isinstance(doc, str):
        raise NabError(f"{where}: detector {name!r}: 'doc' must be a string")
    return Detector(name, expr.strip(), doc.strip(),
                    _thresholds(entry.get("thresholds"), f"{where}: detector {name!r}"), line)


def _thresholds(value: Any, where: str) -> dict[str, float] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != set(PROFILE_NAMES):
        raise NabError(f"{where}: 'thresholds' must give exactly {', '.join(PROFILE_NAMES)}")
    out = {}
    for profile in PROFILE_NAMES:
        theta = value[profile]
        if isinstance(theta, bool) or not isinstance(theta, int | float):
            raise NabError(f"{where}: thresholds.{profile} must be a number, not {theta!r}")
        out[profile] = float(theta)
    return out


def select(detectors: Sequence[Detector], names: str | None) -> list[Detector]:
    """The detectors named in a comma-separated list (all when ``names`` is None)."""
    if names is None:
        return list(detectors)
    known = {d.name: d for d in detectors}
    chosen = []
    for name in (n.strip() for n in names.split(",")):
        if not name:
            continue
        if name not in known:
            raise NabError(f"--detectors: no detector {name!r} (defined: {', '.join(known)})")
        chosen.append(known[name])
    if not chosen:
        raise NabError("--detectors: no detector named")
    return chosen


def compile_detector(d: Detector, origin: Path) -> Any:
    """The expression's IR node; a compile error names the definitions file and line."""
    from monitoring.dsl.compiler import compile_query
    from monitoring.dsl.diagnostics import Severity
    from monitoring.dsl.render import render_text

    node, diags, _ = compile_query(d.expr)
    errors = [x for x in diags if x.severity is Severity.ERROR]
    if node is None or errors:
        detail = "\n".join(render_text(x) for x in errors or diags)
        raise NabError(f"{origin}:{d.line}: detector {d.name!r}: the expression does not "
                       f"compile:\n{detail}")
    return node
