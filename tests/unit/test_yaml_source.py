from __future__ import annotations

import math
import time
from typing import Any

import pytest
import yaml

from monitoring.dsl import yaml_source
from monitoring.dsl.limits import Limits
from monitoring.dsl.source import SourceFile
from monitoring.dsl.yaml_source import NodeKind, YamlDocument, load_yaml, scalar_offsets


def load(text: str, limits: Limits | None = None) -> YamlDocument:
    source = SourceFile("t.yaml", text)
    return load_yaml(source, limits) if limits is not None else load_yaml(source)


def codes(doc: YamlDocument) -> list[str]:
    return [d.code for d in doc.diagnostics]


def at(doc: YamlDocument, code: str) -> tuple[int, int, str]:
    d = next(d for d in doc.diagnostics if d.code == code)
    assert d.span is not None
    return d.span.line, d.span.column, d.span.text()


@pytest.fixture(params=["libyaml", "pure-python"])
def loader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with libyaml's parser and again with PyYAML's pure-Python fallback."""
    if request.param == "pure-python":
        monkeypatch.setattr(yaml_source, "_LOADER", yaml.SafeLoader)
        monkeypatch.setattr(yaml_source, "_BYTE_OFFSETS", False)
    return str(request.param)


# ---------------------------------------------------------------- plain data


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1", 1), ("-7", -7), ("0o17", 15), ("0x1F", 31), ("1.5", 1.5), ("1e3", 1000.0),
        (".5", 0.5), ("true", True), ("False", False), ("null", None), ("~", None), ("", None),
        # YAML 1.2 core schema, as Prometheus's yaml.v3: these stay strings.
        ("yes", "yes"), ("on", "on"), ("off", "off"), ("1_000", "1_000"),
        ("2024-01-01", "2024-01-01"), ("12:30", "12:30"),
        ('"1"', "1"), ("'true'", "true"), ("!!str 1", "1"), ("!!int '7'", 7),
        ("!!float 1", 1.0), ("!!bool 'true'", True), ("!!timestamp 2024-01-01", "2024-01-01"),
        ("!env HOME", "HOME"), ("! 12", "12"), ("!!int x", "x"),
        ("9" * 5000, float("9" * 5000)),
    ],
)
def test_scalar_resolution(text: str, value: Any, loader: str) -> None:
    doc = load(f"v: {text}\n")
    assert doc.ok, doc.diagnostics
    assert doc.data == {"v": value}
    assert type(doc.data["v"]) is type(value)


@pytest.mark.parametrize(("text", "check"), [(".inf", math.isinf), ("-.Inf", math.isinf),
                                            (".nan", math.isnan)])
def test_special_floats(text: str, check: Any) -> None:
    assert check(load(f"v: {text}\n").data["v"])


def test_paths_record_keys_and_values(loader: str) -> None:
    doc = load('a:\n  b: [x, "yé"]\n  c: {d: 1}\n')
    assert doc.data == {"a": {"b": ["x", "yé"], "c": {"d": 1}}}
    node = doc.node(("a", "b", 1))
    assert node is not None and node.kind is NodeKind.SCALAR
    assert doc.span_of(node).text() == '"yé"'
    assert doc.key_span(("a", "c")).text() == "c"
    assert (doc.key_span(("a", "c")).line, doc.key_span(("a", "c")).column) == (3, 3)
    assert doc.value_span(("a", "c", "d")).text() == "1"
    assert doc.entry_span(("a", "c", "d")).text() == "d: 1"
    # A missing path falls back to its nearest ancestor.
    assert doc.value_span(("a", "zzz")).text() == "b: [x, \"yé\"]"
    assert doc.text(("a", "c", "d")) == "1"


def test_block_collection_span_covers_its_entries() -> None:
    doc = load("rules:\n  - a: 1\n    b: 2\n\n# trailing comment\nother: 1\n")
    node = doc.node(("rules", 0))
    assert node is not None
    assert doc.full_span(node).text() == "a: 1\n    b: 2"
    assert doc.span_of(node).text() == "a: 1"


def test_merge_keys(loader: str) -> None:
    doc = load("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\n")
    assert doc.ok
    assert doc.data["c"] == {"y": 3, "x": 1}
    # A merged key points at its definition in the anchor.
    assert doc.key_span(("c", "x")).line == 1


def test_invalid_merge() -> None:
    assert codes(load("a: &a 1\nb:\n  <<: *a\n")) == ["yaml/invalid-merge"]


# ---------------------------------------------------------------- findings


def test_duplicate_key_points_at_second_key(loader: str) -> None:
    doc = load("name: a\nseverity: x\nname: b\n")
    assert codes(doc) == ["yaml/duplicate-key"]
    assert at(doc, "yaml/duplicate-key") == (3, 1, "name")
    d = doc.diagnostics[0]
    assert "line 1" in d.hints[0]
    assert d.related and d.related[0][1].line == 1
    assert doc.data == {"name": "a", "severity": "x"}


def test_duplicate_key_in_aliased_mapping_reported_once() -> None:
    doc = load("a: &x {k: 1, k: 2}\nb: *x\nc: *x\n")
    assert codes(doc) == ["yaml/duplicate-key"]


@pytest.mark.parametrize(
    ("text", "where", "fragment"),
    [
        ("? [1]\n: x\n", (1, 3, "[1]"), "not a sequence"),
        ("? {a: 1}\n: x\n", (1, 3, "{a: 1}"), "not a mapping"),
        ("1: x\n", (1, 1, "1"), "is a number"),
        ("true: x\n", (1, 1, "true"), "is a boolean"),
        ("~: x\n", (1, 1, "~"), "is null"),
    ],
)
def test_non_string_keys(text: str, where: tuple[int, int, str], fragment: str) -> None:
    doc = load(text)
    assert codes(doc) == ["yaml/non-string-key"]
    assert at(doc, "yaml/non-string-key") == where
    assert fragment in doc.diagnostics[0].message


def test_multiple_documents_keep_the_first(loader: str) -> None:
    doc = load("a: b\n---\nc: d\n")
    assert codes(doc) == ["yaml/multiple-documents"]
    assert at(doc, "yaml/multiple-documents") == (2, 1, "---")
    assert doc.data == {"a": "b"}


def test_single_explicit_document_is_fine() -> None:
    doc = load("---\na: b\n...\n")
    assert doc.ok and doc.data == {"a": "b"}


@pytest.mark.parametrize(
    ("text", "line", "col", "fragment"),
    [
        ("a: [1,\n", 2, 1, "node content"),
        ("a: b\n c: d\n", 2, 3, "mapping values are not allowed"),
        ("a:\n\tb: c\n", 2, 1, "cannot start any token"),
        ("a: 'x\n", 2, 1, "end of stream"),
        ("é: ab\x01c\n", 1, 6, "U+0001"),
        ("ü😀: x\x07\n", 1, 6, "U+0007"),
        ("a: *nope\n", 1, 4, "undefined anchor"),
        ("- a\nb: c\n", 2, 1, ""),
    ],
)
def test_syntax_errors_are_located(text: str, line: int, col: int, fragment: str,
                                   loader: str) -> None:
    doc = load(text)
    assert codes(doc) == ["yaml/syntax"]
    d = doc.diagnostics[0]
    assert d.span is not None
    assert (d.span.line, d.span.column) == (line, col), d.message
    assert fragment in d.message
    assert doc.data is None and doc.root is None


def test_tab_indentation_hint() -> None:
    doc = load("a:\n\tb: c\n")
    assert any("tabs" in h for h in doc.diagnostics[0].hints)


def test_byte_order_mark_keeps_offsets(loader: str) -> None:
    doc = load("\ufeffa: [1, 2]\nb: xyz\n")
    assert doc.ok and doc.data == {"a": [1, 2], "b": "xyz"}
    assert doc.value_span(("b",)).text() == "xyz"


def test_non_ascii_offsets(loader: str) -> None:
    doc = load("a: 😀😀 ünï\nb: 'x'\n")
    assert doc.value_span(("a",)).text() == "😀😀 ünï"
    assert doc.value_span(("b",)).text() == "'x'"


# ---------------------------------------------------------------- limits


def billion_laughs(levels: int = 9) -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels + 1):
        name, prev = chr(ord("a") + i), chr(ord("a") + i - 1)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def test_billion_laughs_is_refused_fast(loader: str) -> None:
    started = time.perf_counter()
    doc = load(billion_laughs())
    elapsed = time.perf_counter() - started
    assert codes(doc) == ["limit/yaml-aliases"]
    assert doc.data is None
    assert elapsed < 0.5, elapsed


def test_aliases_below_the_limit_expand() -> None:
    doc = load(billion_laughs(2))
    assert doc.ok
    assert len(doc.data["c"]) == 9 and len(doc.data["c"][0]) == 9
    assert doc.node(("c", 8, 8, 8)) is not None


def test_node_limit_without_aliases() -> None:
    doc = load("[" + ", ".join(["1"] * 50) + "]", Limits(max_yaml_nodes=20))
    assert codes(doc) == ["limit/too-large"]


def test_recursive_alias(loader: str) -> None:
    doc = load("a: &a [1, *a]\n")
    assert codes(doc) == ["yaml/recursive-alias"]
    assert at(doc, "yaml/recursive-alias")[:2] == (1, 11)


@pytest.mark.parametrize("text", ["[" * 200_000, "a:\n" + "".join(
    " " * i + "b:\n" for i in range(1, 3000)), "- " * 100_000 + "x", "{a: " * 100_000])
def test_deep_nesting_is_refused_fast(text: str, loader: str) -> None:
    started = time.perf_counter()
    doc = load(text)
    assert codes(doc) == ["limit/too-deep"]
    assert time.perf_counter() - started < 1.0


def test_depth_through_aliases() -> None:
    deep = "[" * 40 + "1" + "]" * 40
    doc = load(f"a: &x {deep}\nb: {'[' * 30}*x{']' * 30}\n")
    assert codes(doc) == ["limit/too-deep"]
    assert at(doc, "limit/too-deep")[2] == "*x"


def test_nesting_at_the_limit_is_fine() -> None:
    doc = load("[" * 64 + "]" * 64)
    assert doc.ok


def test_file_size_limit() -> None:
    doc = load("a: " + "x" * 100 + "\n", Limits(max_file_bytes=50))
    assert codes(doc) == ["limit/too-large"]
    assert "bytes" in doc.diagnostics[0].message


def test_empty_document() -> None:
    doc = load("# nothing here\n")
    assert doc.ok and doc.data is None and doc.root is None


# ---------------------------------------------------------------- offset maps


def mapped(text: str, path: tuple[str | int, ...]) -> tuple[SourceFile, str, list[int]]:
    doc = load(text)
    assert doc.ok, doc.diagnostics
    node = doc.node(path)
    assert node is not None
    offsets = scalar_offsets(doc.source, node)
    return doc.source, node.value, [offsets(i) for i in range(len(node.value) + 1)]


@pytest.mark.parametrize(
    "text",
    [
        "e: rate(x[5m]) > 1\n",
        'e: "rate(x{job=\\"a\\"}[5m])\\t> 1"\n',
        "e: 'it''s {a=''b''}'\n",
        "e: |\n  sum(\n    rate(x[5m])\n  ) > 1\n",
        "e: |2-\n    two\n   one\n",
        "e: >\n  sum(rate(x[5m]))\n  > 1\n\n  and y\n",
        "e: >-\n    a\n    b\n",
        "e: plain\n  continued\n   lines\n",
        'e: "folded\n  double \\\n  escaped"\n',
        "e: |  # a comment with } and ] in it\n  up == 0\n",
        "e: |\r\n  a\r\n  b\r\n",
        "e: 'ünï 😀 code'\n",
    ],
)
def test_offsets_land_on_the_same_character(text: str, loader: str) -> None:
    source, value, positions = mapped(text, ("e",))
    for i, ch in enumerate(value):
        got = source.text[positions[i]]
        if ch in " \n":
            assert got in " \n\r", (i, ch, got)  # a folded line break maps to the break
        else:  # an escape sequence maps to its backslash
            assert got in (ch, "\\"), (i, ch, got)
    assert positions == sorted(positions)


@pytest.mark.parametrize(
    ("text", "needle", "line", "col"),
    [
        ("e: rate(x[5m]) > 1\n", ">", 1, 16),
        ('e: "a \\"b\\" c"\n', "c", 1, 13),
        ("e: 'a ''b'' c'\n", "c", 1, 13),
        ("e: |\n  sum(\n    rate(x[5m])\n  ) > 1\n", ">", 4, 5),
        ("e: >-\n  foo\n  bar +\n  baz\n", "+", 3, 7),
        ("e: x\n  y z\n", "z", 2, 5),
    ],
)
def test_offsets_give_file_line_and_column(text: str, needle: str, line: int, col: int) -> None:
    source, value, positions = mapped(text, ("e",))
    offset = positions[value.index(needle)]
    assert source.line_col(offset) == (line, col)


def test_block_scalar_span_is_its_content() -> None:
    doc = load("e: |\n  a\n  b\n\nf: 1\n")
    span = doc.value_span(("e",))
    assert span.text() == "a\n  b"
    assert (span.line, span.column) == (2, 3)
