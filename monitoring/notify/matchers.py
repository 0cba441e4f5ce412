r"""Alertmanager label matchers: ``name="v"``, ``name!="v"``, ``name=~"re"``, ``name!~"re"``.

Routes, inhibition rules and silences select alerts with the matcher syntax
Alertmanager users already write (``amtool``, ``matchers:`` in a route), so a
configuration can move between the two. Regular expressions are RE2 and fully
anchored, as in Prometheus and Alertmanager (:mod:`monitoring.dsl.regex`). A label
the alert does not have matches as the empty string: ``team=""`` selects alerts
without a ``team`` label.

Accepted forms: one matcher (``severity="critical"``), several separated by commas,
optionally in braces (``{a="b", c=~"d.*"}``), or a list of such strings (the YAML
form). Values may be double-quoted (with ``\"``, ``\\`` and ``\n`` escapes) or bare
(``severity=critical``); names are label names or double-quoted strings. Errors
say what was expected and where (:class:`MatcherError` carries the offset).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from monitoring.dsl.regex import compile_anchored

OPERATORS = ("=", "!=", "=~", "!~")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE_VALUE_END = set(',}"')
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


class MatcherError(ValueError):
    """A matcher that does not parse: ``message`` says what was expected at ``position``.

    ``position`` is a 0-based character offset into the text (of the list item
    ``index`` for the list form), so a config loader can point at the character.
    """

    def __init__(self, message: str, position: int = 0, index: int | None = None) -> None:
        where = f"item {index + 1}, " if index is not None else ""
        super().__init__(f"{message} ({where}column {position + 1})")
        self.message = message
        self.position = position
        self.index = index


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher; ``str()`` gives the canonical text that parses back to it."""

    name: str
    op: str
    value: str

    def __post_init__(self) -> None:
        if self.op not in OPERATORS:
            raise ValueError(f"matcher operator must be one of {OPERATORS}, got {self.op!r}")
        if self.op in ("=~", "!~"):
            try:
                compile_anchored(self.value)
            except ValueError as e:
                raise MatcherError(f"invalid regular expression {self.value!r}: {e}") from None

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether the label set satisfies this matcher (a missing label is "")."""
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = compile_anchored(self.value).match(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        name = self.name if _NAME.fullmatch(self.name) else _quote(self.name)
        return f"{name}{self.op}{_quote(self.value)}"


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """Whether every matcher matches (an empty list matches everything)."""
    return all(m.matches(labels) for m in matchers)


def format_matchers(matchers: Iterable[Matcher]) -> str:
    """The braces form, ``{a="b", c=~"d"}``."""
    return "{" + ", ".join(str(m) for m in matchers) + "}"


def parse_matchers(text: str | Sequence[str]) -> list[Matcher]:
    """Parse matchers in any accepted form; raises :class:`MatcherError`."""
    if isinstance(text, str):
        return _Parser(text).parse()
    out: list[Matcher] = []
    for i, item in enumerate(text):
        if not isinstance(item, str):
            raise MatcherError(f"expected a matcher string, got {type(item).__name__}", 0, i)
        try:
            out.extend(_Parser(item).parse())
        except MatcherError as e:
            raise MatcherError(e.message, e.position, i) from None
    return out


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


class _Parser:
    """A small hand-written scanner: positions in errors, no regex backtracking."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def parse(self) -> list[Matcher]:
        self._space()
        braced = self._peek() == "{"
        if braced:
            self.pos += 1
        out: list[Matcher] = []
        while True:
            self._space()
            if braced and self._peek() == "}":
                break
            if self.pos >= len(self.text):
                if braced:
                    raise MatcherError("expected '}' to close the matchers", self.pos)
                break
            out.append(self._matcher())
            self._space()
            if self._peek() == ",":
                self.pos += 1
                continue
            if braced and self._peek() == "}":
                break
            if self.pos < len(self.text):
                raise MatcherError(f"expected ',' between matchers, found {self._found()}",
                                   self.pos)
        if braced:
            self.pos += 1  # the closing brace
            self._space()
            if self.pos < len(self.text):
                raise MatcherError(f"unexpected {self._found()} after '}}'", self.pos)
        if not out:
            raise MatcherError("expected at least one matcher such as severity=\"critical\"",
                               self.pos)
        return out

    def _matcher(self) -> Matcher:
        start = self.pos
        name = self._name()
        self._space()
        op_at = self.pos
        op = self._operator()
        self._space()
        value_at = self.pos
        value = self._string() if self._peek() == '"' else self._bare()
        try:
            return Matcher(name, op, value)
        except MatcherError as e:
            raise MatcherError(e.message, value_at) from None
        except ValueError as e:  # pragma: no cover - operators are checked above
            raise MatcherError(str(e), op_at or start) from None

    def _name(self) -> str:
        if self._peek() == '"':
            name = self._string()
            if not name:
                raise MatcherError("expected a label name, found an empty string", self.pos - 2)
            return name
        m = _NAME.match(self.text, self.pos)
        if m is None:
            raise MatcherError(f"expected a label name, found {self._found()}", self.pos)
        self.pos = m.end()
        return m.group()

    def _operator(self) -> str:
        two = self.text[self.pos:self.pos + 2]
        if two in ("=~", "!~", "!="):
            self.pos += 2
            return two
        if two[:1] == "=":
            self.pos += 1
            return "="
        raise MatcherError(f"expected an operator (=, !=, =~ or !~), found {self._found()}",
                           self.pos)

    def _string(self) -> str:
        start = self.pos
        self.pos += 1  # opening quote
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == '"':
                self.pos += 1
                return "".join(out)
            if ch == "\\":
                nxt = self.text[self.pos + 1:self.pos + 2]
                if nxt not in _ESCAPES:
                    raise MatcherError("invalid escape: use \\\", \\\\ or \\n", self.pos)
                out.append(_ESCAPES[nxt])
                self.pos += 2
                continue
            out.append(ch)
            self.pos += 1
        raise MatcherError("unterminated string: expected a closing '\"'", start)

    def _bare(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _BARE_VALUE_END:
            self.pos += 1
        value = self.text[start:self.pos].strip()
        if self._peek() == '"':
            raise MatcherError("unexpected '\"' inside an unquoted value: quote the whole "
                               "value", self.pos)
        return value

    def _space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _peek(self) -> str:
        return self.text[self.pos:self.pos + 1]

    def _found(self) -> str:
        if self.pos >= len(self.text):
            return "the end of the text"
        return repr(self.text[self.pos])
