from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitoring.notify.matchers import (
    Matcher,
    MatcherError,
    format_matchers,
    matches_all,
    parse_matchers,
)


@pytest.mark.parametrize(("text", "expected"), [
    ('severity="critical"', [Matcher("severity", "=", "critical")]),
    ("severity=critical", [Matcher("severity", "=", "critical")]),
    ('team!="db"', [Matcher("team", "!=", "db")]),
    ('service=~"api|web"', [Matcher("service", "=~", "api|web")]),
    ('env !~ "dev.*"', [Matcher("env", "!~", "dev.*")]),
    ('{a="b",c=~"d"}', [Matcher("a", "=", "b"), Matcher("c", "=~", "d")]),
    ('{ a="b", c!="", }', [Matcher("a", "=", "b"), Matcher("c", "!=", "")]),
    ('a="b", c="d"', [Matcher("a", "=", "b"), Matcher("c", "=", "d")]),
    ('msg="say \\"hi\\"\\n\\\\"', [Matcher("msg", "=", 'say "hi"\n\\')]),
    ('"odd name"="x"', [Matcher("odd name", "=", "x")]),
    ("a=", [Matcher("a", "=", "")]),
])
def test_parse_forms(text: str, expected: list[Matcher]) -> None:
    assert parse_matchers(text) == expected


def test_list_form_and_item_errors() -> None:
    assert parse_matchers(['a="1"', "b=~x.*"]) == [Matcher("a", "=", "1"),
                                                   Matcher("b", "=~", "x.*")]
    with pytest.raises(MatcherError) as info:
        parse_matchers(['a="1"', 'b=="2"'])
    assert info.value.index == 1
    assert info.value.position == 3
    assert str(info.value) == "unexpected '\"' inside an unquoted value: quote the whole " \
        "value (item 2, column 4)"


@pytest.mark.parametrize(("text", "position", "message"), [
    ('severity"critical"', 8, "expected an operator (=, !=, =~ or !~), found '\"'"),
    ('1abc="x"', 0, "expected a label name, found '1'"),
    ('a="unterminated', 2, "unterminated string: expected a closing '\"'"),
    ('{a="b"', 6, "expected '}' to close the matchers"),
    ('a="b" c="d"', 6, "expected ',' between matchers, found 'c'"),
    ('{a="b"} x', 8, "unexpected 'x' after '}'"),
    ("", 0, 'expected at least one matcher such as severity="critical"'),
    ("{}", 2, 'expected at least one matcher such as severity="critical"'),
    ('a=~"(unclosed"', 3, "invalid regular expression '(unclosed': missing ): (unclosed"),
    ('a="bad \\q"', 7, 'invalid escape: use \\", \\\\ or \\n'),
])
def test_errors_name_the_position(text: str, position: int, message: str) -> None:
    with pytest.raises(MatcherError) as info:
        parse_matchers(text)
    assert info.value.position == position
    assert info.value.message == message
    assert str(info.value).endswith(f"(column {position + 1})")


def test_matching_semantics() -> None:
    labels = {"alertname": "HighCPU", "severity": "critical", "team": "db"}
    assert Matcher("severity", "=", "critical").matches(labels)
    assert not Matcher("severity", "!=", "critical").matches(labels)
    # regexes are fully anchored (RE2), as in Alertmanager
    assert Matcher("team", "=~", "d|db").matches(labels)
    assert not Matcher("team", "=~", "d").matches(labels)
    assert Matcher("alertname", "!~", "Low.*").matches(labels)
    # a missing label is the empty string
    assert Matcher("env", "=", "").matches(labels)
    assert not Matcher("env", "!=", "").matches(labels)
    assert Matcher("env", "=~", "prod|").matches(labels)
    assert matches_all(parse_matchers('{severity="critical", team=~"db|storage"}'), labels)
    assert not matches_all(parse_matchers('{severity="critical", team="web"}'), labels)
    assert matches_all([], labels)


def test_canonical_text() -> None:
    ms = parse_matchers('{a = b, "x y"!~"q\\"", c=~".*"}')
    assert format_matchers(ms) == '{a="b", "x y"!~"q\\"", c=~".*"}'
    assert parse_matchers(format_matchers(ms)) == ms


_names = st.one_of(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True),
                   st.text(min_size=1, max_size=8))
_values = st.text(max_size=12)


@given(st.lists(st.tuples(_names, st.sampled_from(["=", "!="]), _values), min_size=1,
                max_size=4))
def test_round_trip(items: list[tuple[str, str, str]]) -> None:
    matchers = [Matcher(n, op, v) for n, op, v in items]
    assert parse_matchers(format_matchers(matchers)) == matchers
    assert parse_matchers([str(m) for m in matchers]) == matchers


@given(_names, st.sampled_from(["=~", "!~"]),
       st.from_regex(r"[a-z]{1,4}(\|[a-z]{1,4}){0,2}(\.\*)?", fullmatch=True))
def test_round_trip_regex(name: str, op: str, value: str) -> None:
    m = Matcher(name, op, value)
    assert parse_matchers(str(m)) == [m]
