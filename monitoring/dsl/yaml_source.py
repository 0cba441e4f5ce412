"""YAML loaded safely with positions: plain data plus the node behind every path.

Every YAML input (the seed's rule and config files, Prometheus rule files) goes
through :func:`load_yaml`. It returns plain Python data (dict, list, str, int,
float, bool, None) for the schema validator and the converters, and remembers,
for every path of keys and indices, the YAML node it came from, so a finding
about ``[0, "condition", "metric"]`` points at the key or the value in the file.

The node tree is composed here from libyaml's event stream rather than with
``yaml.compose``: libyaml's composer recurses in C and crashes the interpreter
on deeply nested input (``[[[[...`` a hundred thousand levels deep), and its
parser slows down quadratically on such input. Composing from events lets us
stop at the first collection nested beyond ``LIMITS.max_yaml_depth`` and count
nodes as aliases expand, so a "billion laughs" document is refused after a few
events. The pure-Python ``SafeLoader`` is used when libyaml is not available.

Scalars are resolved with the YAML 1.2 core schema, as Prometheus's yaml.v3
does: ``yes``, ``on`` and ``2024-01-01`` stay strings; only ``true``/``false``
are booleans. Explicit tags other than the core ones (``!!timestamp``, ``!env``)
keep the scalar's text.

Nothing here raises on bad input: YAML errors, limits, duplicate keys and
non-string keys become :class:`~monitoring.dsl.diagnostics.Diagnostic` values.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.reader import ReaderError

from monitoring.dsl.diagnostics import Diagnostic, Severity
from monitoring.dsl.limits import LIMITS, Limits
from monitoring.dsl.source import OffsetMap, SourceFile, Span

_LOADER: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_BYTE_OFFSETS = _LOADER is not yaml.SafeLoader  # libyaml reports reader errors in bytes

YamlPath = tuple[str | int, ...]
"""Keys and sequence indices from the document root to a node."""


class NodeKind(enum.Enum):
    """The three kinds of YAML node."""

    SCALAR = "scalar"
    SEQUENCE = "sequence"
    MAPPING = "mapping"


@dataclass(eq=False, slots=True)
class YamlNode:
    """One node of a composed YAML document, with character offsets into the file.

    ``start``/``end`` cover the node's text: quotes included for quoted scalars,
    the content lines (not the ``|`` header) for block scalars, the brackets of
    flow collections, and first to last entry of block collections. ``size`` is
    the number of nodes under this one once aliases are expanded and ``height``
    the number of nested collections, so limits hold for aliased content too.
    """

    kind: NodeKind
    start: int
    end: int
    value: str = ""
    style: str = ""
    tag: str | None = None
    items: list[YamlNode] = field(default_factory=list)
    pairs: list[tuple[YamlNode, YamlNode]] = field(default_factory=list)
    size: int = 1
    height: int = 0
    content_start: int = 0  # where a scalar's value text begins (after quotes, block header)
    source_end: int = 0  # where the scalar's raw text ends (a block's trailing lines included)

    @property
    def is_scalar(self) -> bool:
        """Whether this is a scalar node."""
        return self.kind is NodeKind.SCALAR

    @property
    def is_block_scalar(self) -> bool:
        """Whether this is a literal (``|``) or folded (``>``) block scalar."""
        return self.style in ("|", ">")


class _Stop(Exception):
    """Raised inside the composer when a limit or a fatal problem ends composition."""


@dataclass(slots=True)
class _Frame:
    """A collection being composed: its node and, for mappings, the key awaiting a value."""

    node: YamlNode
    anchor: str | None = None
    pending_key: YamlNode | None = None
    flow: bool = False


class _Composer:
    """Builds the node tree from parser events, enforcing depth and expansion limits."""

    def __init__(self, source: SourceFile, limits: Limits) -> None:
        self.source = source
        self.limits = limits
        text = source.text
        self.bom = 1 if text.startswith("\ufeff") else 0
        self.text = text[self.bom :]
        self.anchors: dict[str, YamlNode] = {}
        self.open_anchors: set[str] = set()
        self.stack: list[_Frame] = []
        self.total = 0
        self.aliased = False
        self.documents = 0
        self.keep_root = False  # set when a second document stops composition
        self.root: YamlNode | None = None
        self.diagnostics: list[Diagnostic] = []

    # ------------------------------------------------------------ driver

    def run(self) -> YamlNode | None:
        """Compose the first document; ``None`` when the input is empty or broken."""
        loader: Any = None
        try:
            loader = _LOADER(self.text)
            while loader.check_event():
                self._event(loader.get_event())
        except _Stop:
            return self.root if self.keep_root else None
        except yaml.MarkedYAMLError as e:
            self._marked_error(e)
            return None
        except ReaderError as e:
            self._reader_error(e)
            return None
        except (yaml.YAMLError, UnicodeError, ValueError, TypeError, MemoryError) as e:
            self._error("yaml/syntax", f"cannot read YAML: {_first_line(str(e))}",
                        self._span(0, 0))
            return None
        finally:
            if loader is not None:
                loader.dispose()
        return self.root

    def _event(self, event: yaml.Event) -> None:
        if isinstance(event, yaml.ScalarEvent):
            self._attach(self._scalar(event))
        elif isinstance(event, yaml.SequenceStartEvent | yaml.MappingStartEvent):
            self._open(event)
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            self._close(event)
        elif isinstance(event, yaml.AliasEvent):
            self._alias(event)
        elif isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                start = self._offset(event.start_mark)
                self._error("yaml/multiple-documents",
                            "a file may hold only one YAML document",
                            self._span(start, self._offset(event.end_mark) or start + 3),
                            "split the documents into separate files")
                self.keep_root = True
                raise _Stop

    # ------------------------------------------------------------ positions

    def _offset(self, mark: Any) -> int:
        """Character offset of a mark (libyaml's ``index`` counts characters, not bytes)."""
        index = getattr(mark, "index", 0) or 0
        return max(0, min(index + self.bom, len(self.source.text)))

    def _span(self, start: int, end: int) -> Span:
        return Span(self.source, start, max(start, end))

    def _error(self, code: str, message: str, span: Span, *hints: str) -> None:
        self.diagnostics.append(Diagnostic(code, Severity.ERROR, message, span, hints))

    # ------------------------------------------------------------ nodes

    def _scalar(self, event: yaml.ScalarEvent) -> YamlNode:
        start = self._offset(event.start_mark)
        end = self._offset(event.end_mark)
        raw_end = end
        style = event.style or ""
        content = start + 1 if style in ("'", '"') else start
        if style in ("|", ">"):
            start, end, content = _block_bounds(self.source.text, start, end)
        self._count(1, event, alias=False)
        node = YamlNode(NodeKind.SCALAR, start, end, event.value, style, event.tag,
                        content_start=content, source_end=raw_end)
        if event.anchor is not None:
            self.anchors[event.anchor] = node
        return node

    def _open(self, event: yaml.CollectionStartEvent) -> None:
        depth = len(self.stack) + 1
        start = self._offset(event.start_mark)
        if depth > self.limits.max_yaml_depth:
            self._error("limit/too-deep",
                        f"YAML collections are nested more than {self.limits.max_yaml_depth} "
                        "levels deep", self._span(start, start + 1))
            raise _Stop
        kind = NodeKind.SEQUENCE if isinstance(event, yaml.SequenceStartEvent) else \
            NodeKind.MAPPING
        node = YamlNode(kind, start, start, height=1)
        if event.anchor is not None:
            self.anchors[event.anchor] = node
            self.open_anchors.add(event.anchor)
        self._count(1, event, alias=False)
        self.stack.append(_Frame(node, event.anchor, flow=bool(event.flow_style)))

    def _close(self, event: yaml.CollectionEndEvent) -> None:
        frame = self.stack.pop()
        node = frame.node
        if frame.flow:
            node.end = self._offset(event.end_mark)
        else:
            last = node.pairs[-1][1] if node.pairs else (node.items[-1] if node.items else None)
            node.end = max(node.start, last.end) if last is not None else node.start
        node.content_start = node.start
        if frame.anchor is not None:
            self.open_anchors.discard(frame.anchor)
        self._attach(node)

    def _alias(self, event: yaml.AliasEvent) -> None:
        name = event.anchor or ""
        start = self._offset(event.start_mark)
        span = self._span(start, self._offset(event.end_mark))
        target = self.anchors.get(name)
        if target is None:
            self._error("yaml/syntax", f"alias *{name} refers to an undefined anchor", span,
                        f"define it first with &{name}")
            raise _Stop
        if name in self.open_anchors:
            self._error("yaml/recursive-alias", f"alias *{name} is used inside its own anchor",
                        span, "a recursive structure cannot be expanded")
            raise _Stop
        self.aliased = True
        if len(self.stack) + target.height > self.limits.max_yaml_depth:
            self._error("limit/too-deep",
                        f"alias *{name} nests YAML collections more than "
                        f"{self.limits.max_yaml_depth} levels deep", span)
            raise _Stop
        self._count(target.size, event, alias=True)
        self._attach(target)

    def _count(self, n: int, event: yaml.Event, *, alias: bool) -> None:
        """Count nodes as they are produced; aliases count their whole expansion."""
        self.total += n
        if self.total <= self.limits.max_yaml_nodes:
            return
        start = self._offset(event.start_mark)
        span = self._span(start, self._offset(event.end_mark))
        if alias or self.aliased:
            self._error("limit/yaml-aliases",
                        f"YAML aliases expand to more than {self.limits.max_yaml_nodes:,} nodes",
                        span, "a document that multiplies its content through aliases "
                        "(\"billion laughs\") is refused")
        else:
            self._error("limit/too-large",
                        f"YAML document has more than {self.limits.max_yaml_nodes:,} nodes", span)
        raise _Stop

    def _attach(self, node: YamlNode) -> None:
        """Add a finished node to the collection being composed (or make it the root)."""
        if not self.stack:
            self.root = node
            return
        frame = self.stack[-1]
        parent = frame.node
        parent.size += node.size
        parent.height = max(parent.height, node.height + 1)
        if parent.kind is NodeKind.SEQUENCE:
            parent.items.append(node)
        elif frame.pending_key is None:
            frame.pending_key = node
        else:
            parent.pairs.append((frame.pending_key, node))
            frame.pending_key = None

    # ------------------------------------------------------------ errors

    def _marked_error(self, e: yaml.MarkedYAMLError) -> None:
        mark = e.problem_mark or e.context_mark
        start = self._offset(mark) if mark is not None else 0
        end = min(start + 1, len(self.source.text))
        if end > start and self.source.text[start] == "\n":
            end = start
        problem = _first_line(e.problem or e.context or "invalid YAML")
        if "nesting depth" in problem:
            # Newer libyaml stops at its own depth limit before ours is reached.
            self._error("limit/too-deep",
                        f"YAML collections are nested more than {self.limits.max_yaml_depth} "
                        "levels deep", self._span(start, end))
            return
        hints = list(_syntax_hints(problem, self.source.text, start))
        if e.context and e.context_mark is not None and e.problem_mark is not None:
            line, _ = self.source.line_col(self._offset(e.context_mark))
            if line < self.source.line_col(start)[0]:
                hints.append(f"{e.context} that starts on line {line}")
        self._error("yaml/syntax", f"invalid YAML: {problem}", self._span(start, end), *hints)

    def _reader_error(self, e: ReaderError) -> None:
        position = int(e.position)
        if _BYTE_OFFSETS:
            encoded = self.text.encode("utf-8", "surrogatepass")
            position = len(encoded[:position].decode("utf-8", "ignore"))
        start = max(0, min(position + self.bom, len(self.source.text)))
        char = e.character
        code_point = char if isinstance(char, int) else ord(char) if char else 0
        self._error("yaml/syntax", f"invalid YAML: character U+{code_point:04X} is not allowed",
                    self._span(start, min(start + 1, len(self.source.text))),
                    "YAML files may not contain control characters; remove it or write it as "
                    "an escape in a double-quoted string")


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0]


_HINTS = (
    ("mapping values are not allowed", "quote the value if it contains ': '"),
    ("cannot start any token", "quote the value if it starts with a special character "
                               "(@, `, %, |, >, tab)"),
    ("could not find expected ':'", "each line of a mapping needs 'key: value'"),
    ("did not find expected key", "check the indentation of this line against the lines "
                                  "above it"),
    ("found undefined tag handle", "quote the value if it starts with '!'"),
)


def _syntax_hints(problem: str, text: str, offset: int) -> list[str]:
    """Hints for the YAML mistakes people make most (tabs, unquoted special characters)."""
    if offset < len(text) and text[offset] == "\t":
        return ["YAML does not allow tabs for indentation; use spaces"]
    return [hint for needle, hint in _HINTS if needle in problem]


def _block_bounds(text: str, header: int, end: int) -> tuple[int, int, int]:
    """Span of a block scalar's content lines and where its value's first line begins."""
    newline = text.find("\n", header, end)
    content = end if newline == -1 else newline + 1
    stop = end
    while stop > content and text[stop - 1] in " \t\r\n":
        stop -= 1
    first = content
    while first < stop and text[first] in " \t\r\n":
        first += 1
    if first >= stop:
        return header, header + 1, content
    return first, stop, content


# ---------------------------------------------------------------- scalars

_CORE_TAG = "tag:yaml.org,2002:"
_NULL = re.compile(r"(?:~|null|Null|NULL|)\Z")
_TRUE = re.compile(r"(?:true|True|TRUE)\Z")
_FALSE = re.compile(r"(?:false|False|FALSE)\Z")
_INT = re.compile(r"[-+]?[0-9]+\Z")
_OCT = re.compile(r"0o[0-7]+\Z")
_HEX = re.compile(r"0x[0-9a-fA-F]+\Z")
_FLOAT = re.compile(r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?\Z")
_INF = re.compile(r"([-+]?)\.(?:inf|Inf|INF)\Z")
_NAN = re.compile(r"\.(?:nan|NaN|NAN)\Z")


def resolve_scalar(node: YamlNode) -> Any:
    """The Python value of a scalar under the YAML 1.2 core schema."""
    tag = node.tag
    if tag is None:
        return _resolve_plain(node.value) if node.style == "" else node.value
    if not tag.startswith(_CORE_TAG):
        return node.value
    kind = tag[len(_CORE_TAG):]
    value = _resolve_plain(node.value)
    if kind == "bool" and isinstance(value, bool):
        return value
    if kind == "null" and value is None:
        return None
    if isinstance(value, bool):
        return node.value
    if kind == "int" and isinstance(value, int):
        return value
    if kind == "float" and isinstance(value, int | float):
        return float(value)
    return node.value  # !!str, !!timestamp, !!binary, or content that does not fit the tag


# First characters of null, true, false, numbers, .inf and .nan in YAML 1.2's core schema.
_SPECIAL_START = frozenset("~nNtTfF0123456789+-.")


def _resolve_plain(text: str) -> Any:
    """Resolve an untagged plain scalar: null, booleans, integers, floats, else the text."""
    if text and text[0] not in _SPECIAL_START:
        return text  # the common case: no core-schema type starts with this character
    if _NULL.match(text):
        return None
    if _TRUE.match(text):
        return True
    if _FALSE.match(text):
        return False
    try:
        if _INT.match(text):
            return int(text)
        if _OCT.match(text):
            return int(text[2:], 8)
        if _HEX.match(text):
            return int(text[2:], 16)
    except ValueError:  # more digits than int() converts: fall through to float
        return float(text) if _INT.match(text) else text
    if _FLOAT.match(text):
        return float(text)
    m = _INF.match(text)
    if m:
        return -math.inf if m.group(1) == "-" else math.inf
    if _NAN.match(text):
        return math.nan
    return text


def _type_word(value: Any) -> str:
    """How a resolved scalar is described in messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "a string"


# ---------------------------------------------------------------- offsets

_ESCAPE_WIDTH = {"x": 4, "u": 6, "U": 10}


def scalar_offsets(source: SourceFile, node: YamlNode) -> OffsetMap:
    """Map offsets in a scalar's value to offsets in the file, for any scalar style.

    Expressions parsed from a YAML string report positions in the string; this
    map sends them to the file: through the quotes of quoted scalars, escapes of
    double-quoted ones, doubled quotes of single-quoted ones, indentation and
    folded line breaks of plain multi-line scalars, and the indentation of
    literal (``|``) and folded (``>``) block scalars.
    """
    text = source.text
    value = node.value
    begin = node.content_start
    if text.startswith(value, begin):
        return OffsetMap(shift=begin)
    end = max(node.source_end, node.end, begin)
    positions = _walk(value, text, begin, end, node.style)
    if positions is None:
        return OffsetMap.align(value, text, begin, end)
    return OffsetMap(positions=positions)


def _walk(value: str, text: str, src: int, end: int, style: str) -> list[int] | None:
    """Match each value character with its source character; ``None`` if they diverge.

    Source characters that produce nothing in the value (indentation, the
    whitespace around a folded line break, the backslash of an escape) are
    skipped; a folded line break maps the space or newline it became.
    """
    positions: list[int] = []
    for ch in value:
        while True:
            if src >= end:
                return None
            c = text[src]
            if style == '"' and c == "\\":
                nxt = text[src + 1] if src + 1 < end else ""
                if nxt in ("\n", "\r"):
                    src += 2
                    continue
                positions.append(src)
                src += _ESCAPE_WIDTH.get(nxt, 2)
                break
            if style == "'" and c == "'" and ch == "'" and text.startswith("''", src):
                positions.append(src)
                src += 2
                break
            if c == ch:
                positions.append(src)
                src += 1
                break
            if c in "\r\n" and ch in " \n":
                positions.append(src)
                src += 2 if text.startswith("\r\n", src) else 1
                break
            if c in " \t\r\n":
                src += 1
                continue
            return None
    positions.append(positions[-1] + 1 if positions else src)
    return positions


# ---------------------------------------------------------------- documents


@dataclass(slots=True)
class YamlDocument:
    """A loaded YAML file: plain data, the node behind every path, and diagnostics.

    ``data`` is ``None`` when the file is empty or could not be read as YAML;
    ``ok`` tells the two apart.
    """

    source: SourceFile
    data: Any = None
    root: YamlNode | None = None
    diagnostics: list[Diagnostic] = field(default_factory=list)
    values: dict[YamlPath, YamlNode] = field(default_factory=dict)
    keys: dict[YamlPath, YamlNode] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Whether the YAML itself loaded without errors (schema not considered)."""
        return not any(d.severity is Severity.ERROR for d in self.diagnostics)

    def node(self, path: YamlPath) -> YamlNode | None:
        """The value node at ``path``, if present."""
        return self.values.get(path)

    def key_node(self, path: YamlPath) -> YamlNode | None:
        """The key node of the mapping entry at ``path``, if present."""
        return self.keys.get(path)

    def span_of(self, node: YamlNode) -> Span:
        """The span of a node; a collection's span ends with its first line."""
        if node.kind is NodeKind.SCALAR or node.start == node.end:
            return Span(self.source, node.start, node.end)
        line_end = self.source.text.find("\n", node.start, node.end)
        end = node.end if line_end == -1 else line_end
        return Span(self.source, node.start, max(node.start + 1, end))

    def full_span(self, node: YamlNode) -> Span:
        """The whole extent of a node, all lines of a collection included."""
        return Span(self.source, node.start, node.end)

    def value_span(self, path: YamlPath) -> Span:
        """Span of the value at ``path``, or of its nearest existing ancestor."""
        for i in range(len(path), -1, -1):
            node = self.values.get(path[:i])
            if node is not None:
                return self.span_of(node)
        return Span(self.source, 0, 0)

    def key_span(self, path: YamlPath) -> Span:
        """Span of the key of the entry at ``path`` (its value's span for list items)."""
        key = self.keys.get(path)
        if key is not None:
            return self.span_of(key)
        return self.value_span(path)

    def entry_span(self, path: YamlPath) -> Span:
        """From the key of the entry at ``path`` to the end of its value's first line."""
        key = self.keys.get(path)
        value = self.values.get(path)
        if key is None or value is None:
            return self.value_span(path)
        return self.span_of(key).cover(self.span_of(value))

    def offsets(self, node: YamlNode) -> OffsetMap:
        """The :class:`OffsetMap` of a scalar node (see :func:`scalar_offsets`)."""
        return scalar_offsets(self.source, node)

    def text(self, path: YamlPath) -> str | None:
        """The text of the scalar at ``path`` whatever its type (``expr: 1`` gives "1")."""
        node = self.values.get(path)
        if node is None or node.kind is not NodeKind.SCALAR:
            return None
        return node.value


class _Converter:
    """Turns the node tree into plain data, recording nodes by path and checking keys."""

    def __init__(self, doc: YamlDocument) -> None:
        self.doc = doc
        self.entries: dict[int, list[tuple[str, YamlNode, YamlNode]]] = {}
        self.reported: set[tuple[str, int]] = set()

    def convert(self, node: YamlNode, path: YamlPath) -> Any:
        """Plain data for ``node``; every node visited is recorded under its path."""
        self.doc.values[path] = node
        if node.kind is NodeKind.SCALAR:
            return resolve_scalar(node)
        if node.kind is NodeKind.SEQUENCE:
            return [self.convert(child, (*path, i)) for i, child in enumerate(node.items)]
        out: dict[str, Any] = {}
        for key, key_node, value_node in self._entries(node):
            self.doc.keys[(*path, key)] = key_node
            out[key] = self.convert(value_node, (*path, key))
        return out

    def _entries(self, node: YamlNode) -> list[tuple[str, YamlNode, YamlNode]]:
        """A mapping's entries: explicit keys first (duplicates dropped), then merged ones."""
        cached = self.entries.get(id(node))
        if cached is not None:
            return cached
        self.entries[id(node)] = []  # guards against merge cycles
        entries: list[tuple[str, YamlNode, YamlNode]] = []
        seen: dict[str, YamlNode] = {}
        merges: list[YamlNode] = []
        for key_node, value_node in node.pairs:
            if key_node.kind is NodeKind.SCALAR and key_node.tag is None and \
                    key_node.style == "" and key_node.value == "<<":
                merges.append(value_node)
                continue
            key = self._key(key_node)
            if key is None:
                continue
            first = seen.get(key)
            if first is not None:
                self._duplicate(key, key_node, first)
                continue
            seen[key] = key_node
            entries.append((key, key_node, value_node))
        for merged in merges:
            for key, key_node, value_node in self._merged(merged):
                if key not in seen:
                    seen[key] = key_node
                    entries.append((key, key_node, value_node))
        self.entries[id(node)] = entries
        return entries

    def _merged(self, value: YamlNode) -> list[tuple[str, YamlNode, YamlNode]]:
        """Entries brought in by a ``<<`` merge key (a mapping or a list of mappings)."""
        sources = value.items if value.kind is NodeKind.SEQUENCE else [value]
        out: list[tuple[str, YamlNode, YamlNode]] = []
        for src in sources:
            if src.kind is not NodeKind.MAPPING:
                self._report("yaml/invalid-merge", "a merge key (<<) must refer to a mapping or "
                             "a list of mappings", src)
                continue
            names = {k for k, _, _ in out}
            out.extend(e for e in self._entries(src) if e[0] not in names)
        return out

    def _key(self, node: YamlNode) -> str | None:
        """A mapping key as a string; other keys are reported."""
        if node.kind is not NodeKind.SCALAR:
            self._report("yaml/non-string-key", f"a mapping key must be a string, not a "
                         f"{node.kind.value}", node)
            return None
        value = resolve_scalar(node)
        if not isinstance(value, str):
            self._report("yaml/non-string-key",
                         f"mapping key {node.value!r} is {_type_word(value)}; keys must be "
                         "strings", node, f'quote it: "{node.value}"')
        return node.value

    def _duplicate(self, key: str, node: YamlNode, first: YamlNode) -> None:
        line, _ = self.doc.source.line_col(first.start)
        self._report("yaml/duplicate-key", f"duplicate key {key!r} in this mapping", node,
                     f"{key!r} is first defined on line {line}; remove one of them",
                     related=(("first defined here", self.doc.span_of(first)),))

    def _report(self, code: str, message: str, node: YamlNode, *hints: str,
                related: tuple[tuple[str, Span], ...] = ()) -> None:
        if (code, node.start) in self.reported:
            return  # the same node reached again through an alias
        self.reported.add((code, node.start))
        self.doc.diagnostics.append(Diagnostic(code, Severity.ERROR, message,
                                               self.doc.span_of(node), hints, related=related))


def load_yaml(source: SourceFile, limits: Limits = LIMITS) -> YamlDocument:
    """Load one YAML document from ``source`` with positions, limits and diagnostics."""
    doc = YamlDocument(source)
    too_large = _size_check(source, limits)
    if too_large is not None:
        doc.diagnostics.append(too_large)
        return doc
    composer = _Composer(source, limits)
    root = composer.run()
    doc.diagnostics.extend(composer.diagnostics)
    if root is None:
        return doc
    doc.root = root
    doc.data = _Converter(doc).convert(root, ())
    return doc


def _size_check(source: SourceFile, limits: Limits) -> Diagnostic | None:
    """Refuse text whose UTF-8 encoding exceeds ``limits.max_file_bytes``."""
    text = source.text
    size = len(text)
    if size * 4 > limits.max_file_bytes:
        size = len(text.encode("utf-8", "surrogatepass"))
    if size <= limits.max_file_bytes:
        return None
    return Diagnostic("limit/too-large", Severity.ERROR,
                      f"file is {size:,} bytes; the limit is {limits.max_file_bytes:,}",
                      Span(source, 0, 0))
