"""Lexer and recursive-descent parser for Prometheus's dialect of Go ``text/template``.

The lexer and parser follow Go's ``text/template/parse`` package closely (same
token kinds, same three-token look-ahead, same error wording) so that a template
is accepted here exactly when Prometheus accepts it, and a rejected template gets
the message Go would print. Two things differ on purpose:

* errors carry character offsets into the template (``offset``/``end``) instead
  of Go's line numbers, so a linter can point at the bad token;
* ``define``, ``template`` and ``block`` are rejected as unsupported (alert
  templates cannot reach other templates in practice), and so are complex
  number constants.

Prometheus prepends ``{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}
{{$externalURL := .ExternalURL}}{{$value := .Value}}`` to every alert template;
instead of prepending text (which would shift every offset) the parser starts
with those four variables declared and the evaluator binds them.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, NoReturn

from monitoring.templates.functions import (
    FUNCTION_NAMES,
    go_quote,
    go_underscore_ok,
    parse_go_float,
)

if TYPE_CHECKING:
    from monitoring.templates.functions import TemplateContext

MAX_TEMPLATE_LENGTH = 64 * 1024
"""Longest template accepted, in characters; longer input is a syntax error, not a hang."""

MAX_NESTING_DEPTH = 100
"""Deepest nesting of ``if``/``range``/``with`` blocks and parentheses accepted.

Parsing and evaluation are recursive; the limit keeps pathological input from
reaching Python's recursion limit."""

PREDECLARED_VARIABLES = ("$labels", "$externalLabels", "$externalURL", "$value")
"""Variables that Prometheus declares before every alert template (besides ``$``)."""


class TemplateSyntaxError(Exception):
    """A template that Go's ``text/template`` (as configured by Prometheus) rejects.

    ``offset``/``end`` delimit the offending characters in the template text
    (``end`` is exclusive), so callers can underline the exact token.
    """

    def __init__(self, message: str, offset: int, end: int) -> None:
        super().__init__(f"{message} (at offset {offset})")
        self.message = message
        self.offset = offset
        self.end = end


# ---------------------------------------------------------------------------
# Parse tree


@dataclass(frozen=True)
class Node:
    """Base of every tree node: the half-open span ``[pos, end)`` in the template."""

    pos: int
    end: int


@dataclass(frozen=True)
class TextNode(Node):
    """Literal text between actions (after trim markers were applied)."""

    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class DotNode(Node):
    """The cursor ``.``."""

    def __str__(self) -> str:
        return "."


@dataclass(frozen=True)
class NilNode(Node):
    """The untyped ``nil`` constant."""

    def __str__(self) -> str:
        return "nil"


@dataclass(frozen=True)
class BoolNode(Node):
    """``true`` or ``false``."""

    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


@dataclass(frozen=True)
class NumberNode(Node):
    """A numeric or character constant, with every Go interpretation that fits.

    Go keeps an "ideal" constant until it knows the type it must take, so the
    node stores the int64 reading (``int_value``), whether it fits uint64 only
    (``uint_only``) and the float64 reading (``float_value``).
    """

    text: str
    int_value: int | None
    uint_only: bool
    float_value: float | None

    def __str__(self) -> str:
        return self.text

    @property
    def is_float_syntax(self) -> bool:
        """Whether Go's ``idealConstant`` treats the literal as a float64 (e.g. ``1.0``)."""
        text = self.text.lower()
        hex_int = text.lstrip("+-").startswith("0x") and "p" not in text
        rune = text.startswith("'")
        return self.float_value is not None and not hex_int and not rune and any(
            c in text for c in ".ep"
        )


@dataclass(frozen=True)
class StringNode(Node):
    """A quoted or raw string literal; ``quoted`` is the source form, ``text`` the value."""

    quoted: str
    text: str

    def __str__(self) -> str:
        return self.quoted


@dataclass(frozen=True)
class FieldNode(Node):
    """A field chain on the cursor: ``.Labels.job`` has idents ``("Labels", "job")``."""

    idents: tuple[str, ...]

    def __str__(self) -> str:
        return "".join("." + ident for ident in self.idents)


@dataclass(frozen=True)
class VariableNode(Node):
    """A variable, possibly with fields: ``$labels.job`` has idents ``("$labels", "job")``."""

    idents: tuple[str, ...]

    def __str__(self) -> str:
        return ".".join(self.idents)


@dataclass(frozen=True)
class IdentifierNode(Node):
    """A function name."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class ChainNode(Node):
    """Fields applied to a non-field term, as in ``(query "up" | first).Labels``."""

    node: ArgNode
    fields: tuple[str, ...]

    def __str__(self) -> str:
        inner = f"({self.node})" if isinstance(self.node, PipeNode) else str(self.node)
        return inner + "".join("." + f for f in self.fields)


@dataclass(frozen=True)
class CommandNode(Node):
    """One stage of a pipeline: an operand followed by space-separated arguments."""

    args: tuple[ArgNode, ...]

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, PipeNode) else str(a) for a in self.args)


@dataclass(frozen=True)
class PipeNode(Node):
    """``$x := cmd | cmd``: optional declarations (or assignments) and commands."""

    decls: tuple[VariableNode, ...]
    is_assign: bool
    cmds: tuple[CommandNode, ...]

    def __str__(self) -> str:
        text = " | ".join(str(c) for c in self.cmds)
        if self.decls:
            op = " = " if self.is_assign else " := "
            text = ", ".join(str(d) for d in self.decls) + op + text
        return text


ArgNode = (
    DotNode | NilNode | BoolNode | NumberNode | StringNode | FieldNode | VariableNode
    | IdentifierNode | ChainNode | PipeNode
)


@dataclass(frozen=True)
class ListNode(Node):
    """A sequence of text and action nodes."""

    nodes: tuple[Node, ...]

    def __str__(self) -> str:
        return "".join(str(n) for n in self.nodes)


@dataclass(frozen=True)
class ActionNode(Node):
    """``{{pipeline}}``: evaluate and print (unless it declares variables)."""

    pipe: PipeNode

    def __str__(self) -> str:
        return "{{" + str(self.pipe) + "}}"


@dataclass(frozen=True)
class BranchNode(Node):
    """Common shape of ``if``, ``range`` and ``with``: a pipeline, a body and an else body."""

    pipe: PipeNode
    body: ListNode
    else_body: ListNode | None

    keyword = ""

    def __str__(self) -> str:
        text = "{{" + self.keyword + " " + str(self.pipe) + "}}" + str(self.body)
        if self.else_body is not None:
            text += "{{else}}" + str(self.else_body)
        return text + "{{end}}"


@dataclass(frozen=True)
class IfNode(BranchNode):
    """``{{if pipeline}} body {{else}} else_body {{end}}``."""

    keyword = "if"


@dataclass(frozen=True)
class RangeNode(BranchNode):
    """``{{range pipeline}} body {{else}} else_body {{end}}``."""

    keyword = "range"


@dataclass(frozen=True)
class WithNode(BranchNode):
    """``{{with pipeline}} body {{else}} else_body {{end}}``."""

    keyword = "with"


@dataclass(frozen=True)
class BreakNode(Node):
    """``{{break}}`` inside a range."""

    def __str__(self) -> str:
        return "{{break}}"


@dataclass(frozen=True)
class ContinueNode(Node):
    """``{{continue}}`` inside a range."""

    def __str__(self) -> str:
        return "{{continue}}"


@dataclass(frozen=True)
class _EndMarker(Node):
    """``{{end}}``; consumed by the parser, never part of the finished tree."""

    def __str__(self) -> str:
        return "{{end}}"


@dataclass(frozen=True)
class _ElseMarker(Node):
    """``{{else}}`` (or the ``{{else`` of ``{{else if``); consumed by the parser."""

    def __str__(self) -> str:
        return "{{else}}"


# ---------------------------------------------------------------------------
# Lexer


class _Kind(enum.Enum):
    """Token kinds, as Go's ``itemType``; members after ``KEYWORD`` print as ``<word>``."""

    ERROR = enum.auto()
    BOOL = enum.auto()
    CHAR = enum.auto()
    CHAR_CONSTANT = enum.auto()
    COMMENT = enum.auto()
    COMPLEX = enum.auto()
    ASSIGN = enum.auto()
    DECLARE = enum.auto()
    EOF = enum.auto()
    FIELD = enum.auto()
    IDENTIFIER = enum.auto()
    LEFT_DELIM = enum.auto()
    LEFT_PAREN = enum.auto()
    NUMBER = enum.auto()
    PIPE = enum.auto()
    RAW_STRING = enum.auto()
    RIGHT_DELIM = enum.auto()
    RIGHT_PAREN = enum.auto()
    SPACE = enum.auto()
    STRING = enum.auto()
    TEXT = enum.auto()
    VARIABLE = enum.auto()
    KEYWORD = enum.auto()
    BLOCK = enum.auto()
    BREAK = enum.auto()
    CONTINUE = enum.auto()
    DOT = enum.auto()
    DEFINE = enum.auto()
    ELSE = enum.auto()
    END = enum.auto()
    IF = enum.auto()
    NIL = enum.auto()
    RANGE = enum.auto()
    TEMPLATE = enum.auto()
    WITH = enum.auto()


_KEYWORDS = {
    ".": _Kind.DOT, "block": _Kind.BLOCK, "break": _Kind.BREAK, "continue": _Kind.CONTINUE,
    "define": _Kind.DEFINE, "else": _Kind.ELSE, "end": _Kind.END, "if": _Kind.IF,
    "range": _Kind.RANGE, "nil": _Kind.NIL, "template": _Kind.TEMPLATE, "with": _Kind.WITH,
}
_KEYWORD_KINDS = frozenset(_KEYWORDS.values())


@dataclass(frozen=True)
class _Token:
    """A lexed item: kind, span and text (for errors, the message)."""

    kind: _Kind
    pos: int
    end: int
    val: str

    def __str__(self) -> str:
        """Render like Go's ``item.String`` for "unexpected X in Y" messages."""
        if self.kind is _Kind.EOF:
            return "EOF"
        if self.kind is _Kind.ERROR:
            return self.val
        if self.kind in _KEYWORD_KINDS:
            return f"<{self.val}>"
        if len(self.val) > 10:
            return go_quote(self.val[:10]) + "..."
        return go_quote(self.val)


_SPACE_CHARS = " \t\r\n"
_EOF = ""

_State = Callable[[], "_State | None"]


def _is_space(ch: str) -> bool:
    return ch != _EOF and ch in _SPACE_CHARS


def _is_alnum(ch: str) -> bool:
    """Go's ``isAlphaNumeric``: underscore, Unicode letter or decimal digit."""
    return ch == "_" or (ch != _EOF and (ch.isalpha() or ch.isdecimal()))


def _format_rune(ch: str) -> str:
    """Go's ``%#U``: ``U+0041 'A'``, without the quoted form for unprintable runes."""
    text = f"U+{ord(ch):04X}"
    return f"{text} '{ch}'" if ch.isprintable() else text


class _Lexer:
    """Go's template lexer, run on demand: each ``next_item`` call yields one token.

    The lexer is an explicit state machine (no recursion), so input size cannot
    exhaust the Python stack. After an error it only returns EOF.
    """

    def __init__(self, text: str) -> None:
        self.input = text
        self.pos = 0
        self.start = 0
        self.at_eof = False
        self.inside_action = False
        self.action_start = 0
        self.parens: list[int] = []
        self.item = _Token(_Kind.EOF, 0, 0, "EOF")

    # -- primitives -------------------------------------------------------

    def next(self) -> str:
        if self.pos >= len(self.input):
            self.at_eof = True
            return _EOF
        ch = self.input[self.pos]
        self.pos += 1
        return ch

    def peek(self) -> str:
        return self.input[self.pos] if self.pos < len(self.input) else _EOF

    def backup(self) -> None:
        if not self.at_eof and self.pos > 0:
            self.pos -= 1

    def accept(self, valid: str) -> bool:
        ch = self.next()
        if ch != _EOF and ch in valid:
            return True
        self.backup()
        return False

    def accept_run(self, valid: str) -> None:
        while True:
            ch = self.next()
            if ch == _EOF or ch not in valid:
                break
        self.backup()

    def this_item(self, kind: _Kind) -> _Token:
        token = _Token(kind, self.start, self.pos, self.input[self.start:self.pos])
        self.start = self.pos
        return token

    def emit(self, kind: _Kind) -> None:
        self.item = self.this_item(kind)

    def ignore(self) -> None:
        self.start = self.pos

    def errorf(self, message: str, pos: int, end: int) -> None:
        """Stop with an error token; afterwards the input looks empty, as in Go."""
        self.item = _Token(_Kind.ERROR, pos, max(end, pos + 1), message)
        self.input = ""
        self.pos = self.start = 0

    def next_item(self) -> _Token:
        """Run states until one emits a token."""
        self.item = _Token(_Kind.EOF, len(self.input), len(self.input), "EOF")
        state: _State | None = self.lex_inside_action if self.inside_action else self.lex_text
        while state is not None:
            state = state()
        return self.item

    # -- delimiters -------------------------------------------------------

    def has_left_trim_marker(self, at: int) -> bool:
        return self.input[at:at + 1] == "-" and _is_space(self.input[at + 1:at + 2])

    def has_right_trim_marker(self, at: int) -> bool:
        return _is_space(self.input[at:at + 1]) and self.input[at + 1:at + 2] == "-"

    def at_right_delim(self) -> tuple[bool, bool]:
        """Whether ``}}`` (possibly preceded by a `` -`` trim marker) starts here."""
        if self.has_right_trim_marker(self.pos) and self.input.startswith("}}", self.pos + 2):
            return True, True
        return self.input.startswith("}}", self.pos), False

    def lex_text(self) -> _State | None:
        x = self.input.find("{{", self.pos)
        if x < 0:
            self.pos = len(self.input)
            self.emit(_Kind.TEXT if self.pos > self.start else _Kind.EOF)
            return None
        if x > self.pos:
            self.pos = x
            trim = 0
            if self.has_left_trim_marker(x + 2):
                text = self.input[self.start:self.pos]
                trim = len(text) - len(text.rstrip(_SPACE_CHARS))
            self.pos -= trim
            item = self.this_item(_Kind.TEXT)
            self.pos += trim
            self.ignore()
            if item.val:
                self.item = item
                return None
        return self.lex_left_delim

    def lex_left_delim(self) -> _State | None:
        self.action_start = self.pos
        self.pos += 2
        after = 2 if self.has_left_trim_marker(self.pos) else 0
        if self.input.startswith("/*", self.pos + after):
            self.pos += after
            self.ignore()
            return self.lex_comment
        self.item = self.this_item(_Kind.LEFT_DELIM)
        self.inside_action = True
        self.pos += after
        self.ignore()
        self.parens = []
        return None

    def lex_comment(self) -> _State | None:
        self.pos += 2
        x = self.input.find("*/", self.pos)
        if x < 0:
            self.errorf("unclosed comment", self.action_start, len(self.input))
            return None
        self.pos = x + 2
        delim, trim = self.at_right_delim()
        if not delim:
            self.errorf("comment ends before closing delimiter", self.pos, self.pos + 1)
            return None
        self.pos += 4 if trim else 2
        if trim:
            self.pos += self._leading_space(self.pos)
        self.ignore()
        return self.lex_text

    def _leading_space(self, at: int) -> int:
        rest = self.input[at:]
        return len(rest) - len(rest.lstrip(_SPACE_CHARS))

    def lex_right_delim(self) -> _State | None:
        _, trim = self.at_right_delim()
        if trim:
            self.pos += 2
            self.ignore()
        self.pos += 2
        self.item = self.this_item(_Kind.RIGHT_DELIM)
        if trim:
            self.pos += self._leading_space(self.pos)
            self.ignore()
        self.inside_action = False
        return None

    # -- inside actions ---------------------------------------------------

    def lex_inside_action(self) -> _State | None:
        delim, _ = self.at_right_delim()
        if delim:
            if not self.parens:
                return self.lex_right_delim
            self.errorf("unclosed left paren", self.parens[-1], self.parens[-1] + 1)
            return None
        ch = self.next()
        simple = {"=": _Kind.ASSIGN, "|": _Kind.PIPE}
        states: dict[str, _State] = {
            '"': self.lex_quote, "`": self.lex_raw_quote, "$": self.lex_variable,
            "'": self.lex_char,
        }
        if ch == _EOF:
            self.errorf("unclosed action", self.action_start, len(self.input))
        elif _is_space(ch):
            self.backup()
            return self.lex_space
        elif ch in simple:
            self.emit(simple[ch])
        elif ch == ":":
            if self.next() != "=":
                self.errorf("expected :=", self.start, self.start + 1)
            else:
                self.emit(_Kind.DECLARE)
        elif ch in states:
            return states[ch]
        elif ch == "." and self.pos < len(self.input) and not "0" <= self.input[self.pos] <= "9":
            return self.lex_field
        elif ch in "+-." or "0" <= ch <= "9":
            self.backup()
            return self.lex_number
        elif _is_alnum(ch):
            self.backup()
            return self.lex_identifier
        else:
            return self.lex_punctuation(ch)
        return None

    def lex_punctuation(self, ch: str) -> _State | None:
        if ch == "(":
            self.parens.append(self.start)
            self.emit(_Kind.LEFT_PAREN)
        elif ch == ")":
            if not self.parens:
                self.errorf("unexpected right paren", self.start, self.start + 1)
                return None
            self.parens.pop()
            self.emit(_Kind.RIGHT_PAREN)
        elif ch <= "\x7f" and ch.isprintable():
            self.emit(_Kind.CHAR)
        else:
            self.errorf(f"unrecognized character in action: {_format_rune(ch)}",
                        self.start, self.start + 1)
        return None

    def lex_space(self) -> _State | None:
        """A run of spaces; careful with `` -}}``, whose space belongs to the delimiter."""
        count = 0
        while _is_space(self.peek()):
            self.next()
            count += 1
        if self.has_right_trim_marker(self.pos - 1) and self.input.startswith("}}", self.pos + 1):
            self.backup()
            if count == 1:
                return self.lex_right_delim
        self.emit(_Kind.SPACE)
        return None

    def at_terminator(self) -> bool:
        """Whether an identifier may end here (so ``.X.Y`` splits and ``$x+2`` fails)."""
        ch = self.peek()
        if _is_space(ch) or ch in (_EOF, ".", ",", "|", ":", ")", "("):
            return True
        return self.input.startswith("}}", self.pos)

    def lex_identifier(self) -> _State | None:
        while _is_alnum(self.next()):
            pass
        self.backup()
        if not self.at_terminator():
            self.errorf(f"bad character {_format_rune(self.peek())}", self.pos, self.pos + 1)
            return None
        word = self.input[self.start:self.pos]
        if word in _KEYWORDS:
            self.emit(_KEYWORDS[word])
        elif word in ("true", "false"):
            self.emit(_Kind.BOOL)
        else:
            self.emit(_Kind.IDENTIFIER)
        return None

    def lex_field(self) -> _State | None:
        return self.lex_field_or_variable(_Kind.FIELD)

    def lex_variable(self) -> _State | None:
        if self.at_terminator():
            self.emit(_Kind.VARIABLE)
            return None
        return self.lex_field_or_variable(_Kind.VARIABLE)

    def lex_field_or_variable(self, kind: _Kind) -> _State | None:
        if self.at_terminator():
            self.emit(_Kind.VARIABLE if kind is _Kind.VARIABLE else _Kind.DOT)
            return None
        while _is_alnum(self.next()):
            pass
        self.backup()
        if not self.at_terminator():
            self.errorf(f"bad character {_format_rune(self.peek())}", self.pos, self.pos + 1)
            return None
        self.emit(kind)
        return None

    def _scan_quoted(self, quote: str, message: str, kind: _Kind) -> _State | None:
        while True:
            ch = self.next()
            if ch == "\\":
                escaped = self.next()
                if escaped not in (_EOF, "\n"):
                    continue
                ch = _EOF
            if ch in (_EOF, "\n"):
                self.errorf(message, self.start, self.pos)
                return None
            if ch == quote:
                break
        self.emit(kind)
        return None

    def lex_char(self) -> _State | None:
        return self._scan_quoted("'", "unterminated character constant", _Kind.CHAR_CONSTANT)

    def lex_quote(self) -> _State | None:
        return self._scan_quoted('"', "unterminated quoted string", _Kind.STRING)

    def lex_raw_quote(self) -> _State | None:
        end = self.input.find("`", self.pos)
        if end < 0:
            self.errorf("unterminated raw quoted string", self.start, len(self.input))
            return None
        self.pos = end + 1
        self.emit(_Kind.RAW_STRING)
        return None

    def lex_number(self) -> _State | None:
        if not self.scan_number():
            self.errorf(f"bad number syntax: {go_quote(self.input[self.start:self.pos])}",
                        self.start, self.pos)
            return None
        if self.peek() in ("+", "-"):
            if not self.scan_number() or self.input[self.pos - 1] != "i":
                self.errorf(f"bad number syntax: {go_quote(self.input[self.start:self.pos])}",
                            self.start, self.pos)
                return None
            self.emit(_Kind.COMPLEX)
            return None
        self.emit(_Kind.NUMBER)
        return None

    def scan_number(self) -> bool:
        """Go's deliberately loose number scanner; the parser validates the text."""
        self.accept("+-")
        digits = "0123456789_"
        if self.accept("0"):
            if self.accept("xX"):
                digits = "0123456789abcdefABCDEF_"
            elif self.accept("oO"):
                digits = "01234567_"
            elif self.accept("bB"):
                digits = "01_"
        self.accept_run(digits)
        if self.accept("."):
            self.accept_run(digits)
        if len(digits) == 11 and self.accept("eE"):
            self.accept("+-")
            self.accept_run("0123456789_")
        if len(digits) == 23 and self.accept("pP"):
            self.accept("+-")
            self.accept_run("0123456789_")
        self.accept("i")
        if _is_alnum(self.peek()):
            self.next()
            return False
        return True


# ---------------------------------------------------------------------------
# Literals


_SIMPLE_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\",
}
_HEX = "0123456789abcdefABCDEF"


class _LiteralError(ValueError):
    """A malformed literal; ``at`` is the offset of the problem inside the literal."""

    def __init__(self, message: str, at: int) -> None:
        super().__init__(message)
        self.at = at


def _unquote_char(body: str, i: int, quote: str) -> tuple[bytes, int, int]:
    r"""Decode one (possibly escaped) character of a Go literal at ``body[i]``.

    Returns ``(utf8_bytes, code, next_index)``; ``\x`` and octal escapes yield a
    single raw byte, as in Go, so ``"\xe2\x82\xac"`` spells the euro sign.
    """
    ch = body[i]
    if ch != "\\":
        return ch.encode("utf-8", "surrogatepass"), ord(ch), i + 1
    if i + 1 >= len(body):
        raise _LiteralError("invalid syntax: trailing backslash", i)
    esc = body[i + 1]
    if esc in _SIMPLE_ESCAPES:
        return _SIMPLE_ESCAPES[esc].encode(), ord(_SIMPLE_ESCAPES[esc]), i + 2
    if esc in "'\"":
        if esc != quote:
            raise _LiteralError(f"invalid syntax: unknown escape sequence \\{esc}", i)
        return esc.encode(), ord(esc), i + 2
    widths = {"x": 2, "u": 4, "U": 8}
    if esc in widths:
        digits = body[i + 2:i + 2 + widths[esc]]
        if len(digits) != widths[esc] or any(c not in _HEX for c in digits):
            raise _LiteralError(f"invalid syntax: malformed \\{esc} escape", i)
        code = int(digits, 16)
        if esc == "x":
            return bytes([code]), code, i + 2 + len(digits)
        if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise _LiteralError(f"invalid syntax: \\{esc}{digits} is not a valid code point", i)
        return chr(code).encode(), code, i + 2 + len(digits)
    if "0" <= esc <= "7":
        digits = body[i + 1:i + 4]
        if len(digits) != 3 or any(not "0" <= c <= "7" for c in digits) or int(digits, 8) > 255:
            raise _LiteralError("invalid syntax: malformed octal escape", i)
        return bytes([int(digits, 8)]), int(digits, 8), i + 4
    raise _LiteralError(f"invalid syntax: unknown escape sequence \\{esc}", i)


def unquote_string(token: str) -> str:
    """Go's ``strconv.Unquote`` for the two string forms the lexer produces."""
    if token.startswith("`"):
        return token[1:-1].replace("\r", "")
    body, out, i = token[1:-1], bytearray(), 0
    while i < len(body):
        chunk, _, i = _unquote_char(body, i, '"')
        out += chunk
    return out.decode("utf-8", "replace")


def _unquote_rune(token: str) -> int:
    r"""Value of a character constant such as ``'a'`` or ``'\n'``."""
    body = token[1:-1]
    if not body:
        raise _LiteralError("invalid syntax: empty character constant", 0)
    _, code, i = _unquote_char(body, 0, "'")
    if i != len(body):
        raise _LiteralError(f"malformed character constant: {token}", 0)
    return code


def parse_go_int(text: str) -> int | None:
    """Go's ``strconv.ParseInt(text, 0, 0)`` without the range check; None if malformed."""
    sign, body = (-1, text[1:]) if text[:1] == "-" else (1, text[1:] if text[:1] == "+" else text)
    if "_" in body and not go_underscore_ok(body):
        return None
    body = body.replace("_", "")
    prefixes = {"0x": 16, "0o": 8, "0b": 2}
    base = prefixes.get(body[:2].lower(), 0)
    if base:
        body = body[2:]
    elif len(body) > 1 and body[0] == "0":
        base, body = 8, body[1:]
    else:
        base = 10
    valid = "0123456789abcdef"[:base]
    if not body or any(c.lower() not in valid for c in body):
        return None
    return sign * int(body, base)


_INT64 = (-(2**63), 2**63 - 1)


def _new_number(token: _Token) -> NumberNode:
    """Interpret a numeric token the way Go's ``parse.newNumber`` does."""
    text = token.val
    if token.kind is _Kind.CHAR_CONSTANT:
        code = _unquote_rune(text)
        return NumberNode(token.pos, token.end, text, code, False, float(code))
    if token.kind is _Kind.COMPLEX or text.endswith("i"):
        raise _LiteralError("complex number constants are not supported", 0)
    parsed = parse_go_int(text)
    if parsed is not None and _INT64[0] <= parsed <= _INT64[1]:
        return NumberNode(token.pos, token.end, text, parsed, False, float(parsed))
    if parsed is not None and 0 <= parsed < 2**64:
        return NumberNode(token.pos, token.end, text, None, True, float(parsed))
    try:
        value = parse_go_float(text)
    except ValueError:
        raise _LiteralError(f"illegal number syntax: {go_quote(text)}", 0) from None
    if not any(c in text for c in ".eEpP"):
        raise _LiteralError(f"integer overflow: {go_quote(text)}", 0)
    as_int = int(value) if value.is_integer() else None
    if as_int is not None and not _INT64[0] <= as_int <= _INT64[1]:
        as_int = None
    return NumberNode(token.pos, token.end, text, as_int, False, value)


# ---------------------------------------------------------------------------
# Parser


_COMMAND_STARTS = frozenset({
    _Kind.BOOL, _Kind.CHAR_CONSTANT, _Kind.COMPLEX, _Kind.DOT, _Kind.FIELD, _Kind.IDENTIFIER,
    _Kind.NUMBER, _Kind.NIL, _Kind.RAW_STRING, _Kind.STRING, _Kind.VARIABLE, _Kind.LEFT_PAREN,
})
_UNSUPPORTED = {_Kind.DEFINE: "define", _Kind.TEMPLATE: "template", _Kind.BLOCK: "block"}


def _suggest(name: str, candidates: list[str]) -> str:
    """A " (did you mean ...?)" suffix when ``name`` looks like a typo of a candidate."""
    close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.7)
    return f" (did you mean {go_quote(close[0])}?)" if close else ""


@dataclass(frozen=True)
class _Opener:
    """The span and keyword of an open block, for "missing {{end}}" errors."""

    keyword: str
    pos: int
    end: int


class _Parser:
    """Go's ``parse.Tree`` parser: recursive descent over a three-token look-ahead."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lex = _Lexer(text)
        self.tokens: list[_Token] = [_Token(_Kind.EOF, 0, 0, "")] * 3
        self.peek_count = 0
        self.vars: list[str] = ["$", *PREDECLARED_VARIABLES]
        self.range_depth = 0
        self.depth = 0

    # -- errors -----------------------------------------------------------

    def error(self, message: str, pos: int, end: int) -> NoReturn:
        """Raise a syntax error, keeping the span inside the text whenever possible."""
        if pos >= len(self.text) and self.text:
            pos = len(self.text) - 1
        end = min(max(end, pos + 1), max(len(self.text), pos + 1))
        raise TemplateSyntaxError(message, pos, end)

    def unexpected(self, token: _Token, context: str) -> NoReturn:
        if token.kind is _Kind.ERROR:
            self.error(token.val, token.pos, token.end)
        self.error(f"unexpected {token} in {context}", token.pos, token.end)

    # -- token stream -----------------------------------------------------

    def next(self) -> _Token:
        if self.peek_count > 0:
            self.peek_count -= 1
        else:
            self.tokens[0] = self.lex.next_item()
        return self.tokens[self.peek_count]

    def backup(self) -> None:
        self.peek_count += 1

    def backup2(self, t1: _Token) -> None:
        self.tokens[1] = t1
        self.peek_count = 2

    def backup3(self, t2: _Token, t1: _Token) -> None:
        self.tokens[1] = t1
        self.tokens[2] = t2
        self.peek_count = 3

    def peek(self) -> _Token:
        if self.peek_count > 0:
            return self.tokens[self.peek_count - 1]
        self.peek_count = 1
        self.tokens[0] = self.lex.next_item()
        return self.tokens[0]

    def next_non_space(self) -> _Token:
        while True:
            token = self.next()
            if token.kind is not _Kind.SPACE:
                return token

    def peek_non_space(self) -> _Token:
        token = self.next_non_space()
        self.backup()
        return token

    def expect(self, kind: _Kind, context: str) -> _Token:
        token = self.next_non_space()
        if token.kind is not kind:
            self.unexpected(token, context)
        return token

    # -- nesting ----------------------------------------------------------

    def enter(self, pos: int, end: int) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING_DEPTH:
            self.error(f"nesting too deep: more than {MAX_NESTING_DEPTH} levels of blocks "
                       "and parentheses", pos, end)

    # -- structure --------------------------------------------------------

    def parse(self) -> ListNode:
        nodes: list[Node] = []
        while self.peek().kind is not _Kind.EOF:
            node = self.text_or_action()
            if isinstance(node, _EndMarker | _ElseMarker):
                self.error(f"unexpected {node}", node.pos, node.end)
            nodes.append(node)
        return ListNode(0, len(self.text), tuple(nodes))

    def item_list(self, opener: _Opener) -> tuple[ListNode, Node]:
        """Parse up to the ``{{end}}`` or ``{{else}}`` that closes ``opener``."""
        nodes: list[Node] = []
        start = self.peek_non_space().pos
        while self.peek_non_space().kind is not _Kind.EOF:
            node = self.text_or_action()
            if isinstance(node, _EndMarker | _ElseMarker):
                return ListNode(start, node.pos, tuple(nodes)), node
            nodes.append(node)
        self.error(f"unexpected EOF: missing {{{{end}}}} for {{{{{opener.keyword}}}}}",
                   opener.pos, opener.end)

    def text_or_action(self) -> Node:
        token = self.next_non_space()
        if token.kind is _Kind.TEXT:
            return TextNode(token.pos, token.end, token.val)
        if token.kind is _Kind.LEFT_DELIM:
            return self.action(token)
        self.unexpected(token, "input")

    def action(self, delim: _Token) -> Node:
        token = self.next_non_space()
        kind = token.kind
        if kind in _UNSUPPORTED:
            word = _UNSUPPORTED[kind]
            self.error(f"{{{{{word}}}}} is not supported in alert templates", token.pos, token.end)
        if kind in (_Kind.BREAK, _Kind.CONTINUE):
            return self.loop_control(delim, token)
        if kind is _Kind.ELSE:
            return self.else_control(delim)
        if kind is _Kind.END:
            close = self.expect(_Kind.RIGHT_DELIM, "end")
            return _EndMarker(delim.pos, close.end)
        if kind in (_Kind.IF, _Kind.RANGE, _Kind.WITH):
            return self.branch(delim.pos, token.val)
        self.backup()
        pipe, close = self.pipeline("command", _Kind.RIGHT_DELIM)
        return ActionNode(delim.pos, close.end, pipe)

    def loop_control(self, delim: _Token, token: _Token) -> Node:
        close = self.next_non_space()
        if close.kind is not _Kind.RIGHT_DELIM:
            self.unexpected(close, f"{{{{{token.val}}}}}")
        if self.range_depth == 0:
            self.error(f"{{{{{token.val}}}}} outside {{{{range}}}}", delim.pos, close.end)
        node_type = BreakNode if token.kind is _Kind.BREAK else ContinueNode
        return node_type(delim.pos, close.end)

    def else_control(self, delim: _Token) -> Node:
        peeked = self.peek_non_space()
        if peeked.kind in (_Kind.IF, _Kind.WITH):
            return _ElseMarker(delim.pos, peeked.pos)
        close = self.expect(_Kind.RIGHT_DELIM, "else")
        return _ElseMarker(delim.pos, close.end)

    def branch(self, pos: int, keyword: str) -> BranchNode:
        """Parse ``if``/``range``/``with`` after the keyword (Go's ``parseControl``)."""
        node_types: dict[str, type[BranchNode]] = {
            "if": IfNode, "range": RangeNode, "with": WithNode,
        }
        self.enter(pos, pos + 2)
        saved_vars = len(self.vars)
        try:
            pipe, close = self.pipeline(keyword, _Kind.RIGHT_DELIM)
            opener = _Opener(keyword, pos, close.end)
            self.range_depth += keyword == "range"
            body, follower = self.item_list(opener)
            self.range_depth -= keyword == "range"
            else_body, end = self.else_branch(keyword, opener, follower)
            return node_types[keyword](pos, end, pipe, body, else_body)
        finally:
            del self.vars[saved_vars:]
            self.depth -= 1

    def else_branch(self, keyword: str, opener: _Opener,
                    follower: Node) -> tuple[ListNode | None, int]:
        """After a body: nothing, an ``{{else}}`` body, or an ``{{else if}}`` chain."""
        if isinstance(follower, _EndMarker):
            return None, follower.end
        if keyword in ("if", "with") and self.peek().kind is _KEYWORDS[keyword]:
            self.next()
            chained = self.branch(follower.pos, keyword)
            return ListNode(chained.pos, chained.end, (chained,)), chained.end
        else_body, closer = self.item_list(opener)
        if not isinstance(closer, _EndMarker):
            self.error(f"expected end; found {closer}", closer.pos, closer.end)
        return else_body, closer.end

    # -- pipelines --------------------------------------------------------

    def declarations(self, context: str) -> tuple[list[VariableNode], bool]:
        """Leading ``$x :=`` / ``$x =`` / ``$k, $v :=`` of a pipeline, if any."""
        decls: list[VariableNode] = []
        while True:
            var = self.peek_non_space()
            if var.kind is not _Kind.VARIABLE:
                return decls, False
            self.next()
            after = self.peek()
            following = self.peek_non_space()
            if following.kind in (_Kind.ASSIGN, _Kind.DECLARE):
                self.next_non_space()
                decls.append(VariableNode(var.pos, var.end, (var.val,)))
                self.vars.append(var.val)
                return decls, following.kind is _Kind.ASSIGN
            if following.kind is _Kind.CHAR and following.val == ",":
                self.next_non_space()
                decls.append(VariableNode(var.pos, var.end, (var.val,)))
                self.vars.append(var.val)
                if context == "range" and len(decls) < 2:
                    peeked = self.peek_non_space()
                    if peeked.kind in (_Kind.VARIABLE, _Kind.RIGHT_DELIM, _Kind.RIGHT_PAREN):
                        continue
                    self.error("range can only initialize variables", peeked.pos, peeked.end)
                self.error(f"too many declarations in {context}", following.pos, following.end)
            if after.kind is _Kind.SPACE:
                self.backup3(var, after)
            else:
                self.backup2(var)
            return decls, False

    def pipeline(self, context: str, end: _Kind) -> tuple[PipeNode, _Token]:
        """``declarations? command ('|' command)*`` up to ``end``; returns the end token too."""
        start = self.peek_non_space().pos
        decls, is_assign = self.declarations(context)
        cmds: list[CommandNode] = []
        while True:
            token = self.next_non_space()
            if token.kind is end:
                self.check_pipeline(cmds, context, token)
                last = cmds[-1].end
                return PipeNode(start, last, tuple(decls), is_assign, tuple(cmds)), token
            if token.kind not in _COMMAND_STARTS:
                self.unexpected(token, context)
            self.backup()
            cmds.append(self.command())

    def check_pipeline(self, cmds: list[CommandNode], context: str, end: _Token) -> None:
        if not cmds:
            self.error(f"missing value for {context}", end.pos, end.end)
        for stage, cmd in enumerate(cmds[1:], start=2):
            first = cmd.args[0]
            if isinstance(first, BoolNode | DotNode | NilNode | NumberNode | StringNode):
                self.error(f"non executable command in pipeline stage {stage}",
                           first.pos, first.end)

    def command(self) -> CommandNode:
        first = self.peek_non_space()
        args: list[ArgNode] = []
        while True:
            self.peek_non_space()
            operand = self.operand()
            if operand is not None:
                args.append(operand)
            token = self.next()
            if token.kind is _Kind.SPACE:
                continue
            if token.kind in (_Kind.RIGHT_DELIM, _Kind.RIGHT_PAREN):
                self.backup()
            elif token.kind is not _Kind.PIPE:
                self.unexpected(token, "operand")
            break
        if not args:
            self.error("empty command", first.pos, first.end)
        return CommandNode(args[0].pos, args[-1].end, tuple(args))

    def operand(self) -> ArgNode | None:
        """A term followed by any number of ``.Field`` accesses."""
        node = self.term()
        if node is None or self.peek().kind is not _Kind.FIELD:
            return node
        first = self.peek()
        fields: list[str] = []
        end = node.end
        while self.peek().kind is _Kind.FIELD:
            token = self.next()
            fields.append(token.val[1:])
            end = token.end
        if isinstance(node, FieldNode | VariableNode):
            return replace(node, end=end, idents=node.idents + tuple(fields))
        if isinstance(node, BoolNode | StringNode | NumberNode | NilNode | DotNode):
            self.error(f"unexpected . after term {go_quote(str(node))}", first.pos, first.end)
        return ChainNode(node.pos, end, node, tuple(fields))

    def term(self) -> ArgNode | None:
        token = self.next_non_space()
        kind = token.kind
        simple: dict[_Kind, Callable[[_Token], ArgNode]] = {
            _Kind.IDENTIFIER: self.identifier,
            _Kind.DOT: lambda t: DotNode(t.pos, t.end),
            _Kind.NIL: lambda t: NilNode(t.pos, t.end),
            _Kind.VARIABLE: self.use_var,
            _Kind.FIELD: lambda t: FieldNode(t.pos, t.end, (t.val[1:],)),
            _Kind.BOOL: lambda t: BoolNode(t.pos, t.end, t.val == "true"),
            _Kind.CHAR_CONSTANT: self.number,
            _Kind.COMPLEX: self.number,
            _Kind.NUMBER: self.number,
            _Kind.STRING: self.string,
            _Kind.RAW_STRING: self.string,
            _Kind.LEFT_PAREN: self.parenthesized,
        }
        if kind in simple:
            return simple[kind](token)
        self.backup()
        return None

    def identifier(self, token: _Token) -> IdentifierNode:
        if token.val not in FUNCTION_NAMES:
            hint = _suggest(token.val, sorted(FUNCTION_NAMES))
            self.error(f"function {go_quote(token.val)} not defined{hint}", token.pos, token.end)
        return IdentifierNode(token.pos, token.end, token.val)

    def use_var(self, token: _Token) -> VariableNode:
        if token.val not in self.vars:
            hint = _suggest(token.val, sorted(set(self.vars)))
            self.error(f"undefined variable {go_quote(token.val)}{hint}", token.pos, token.end)
        return VariableNode(token.pos, token.end, (token.val,))

    def number(self, token: _Token) -> NumberNode:
        try:
            return _new_number(token)
        except _LiteralError as e:
            self.error(str(e), token.pos, token.end)

    def string(self, token: _Token) -> StringNode:
        try:
            text = unquote_string(token.val)
        except _LiteralError as e:
            self.error(str(e), token.pos + 1 + e.at, token.pos + 3 + e.at)
        return StringNode(token.pos, token.end, token.val, text)

    def parenthesized(self, token: _Token) -> PipeNode:
        self.enter(token.pos, token.end)
        try:
            pipe, close = self.pipeline("parenthesized pipeline", _Kind.RIGHT_PAREN)
        finally:
            self.depth -= 1
        return replace(pipe, pos=token.pos, end=close.end)


# ---------------------------------------------------------------------------
# Public API


def _walk(node: Node) -> Iterator[Node]:
    """Every node below (and including) ``node``, depth first."""
    yield node
    children: tuple[Node | None, ...] = ()
    if isinstance(node, ListNode):
        children = node.nodes
    elif isinstance(node, ActionNode):
        children = (node.pipe,)
    elif isinstance(node, BranchNode):
        children = (node.pipe, node.body, node.else_body)
    elif isinstance(node, PipeNode):
        children = (*node.decls, *node.cmds)
    elif isinstance(node, CommandNode):
        children = node.args
    elif isinstance(node, ChainNode):
        children = (node.node,)
    for child in children:
        if child is not None:
            yield from _walk(child)


@dataclass(frozen=True)
class Template:
    """A parsed template; ``render`` evaluates it like Prometheus's alert ``Expander``."""

    source: str
    root: ListNode = field(repr=False, compare=False)

    def render(self, context: TemplateContext) -> str:
        """Expand the template; raises ``TemplateRenderError`` where Go's ``Execute`` fails."""
        # Imported here because the evaluator depends on this module's node types.
        from monitoring.templates.render import execute

        return execute(self, context)

    def variables(self) -> frozenset[str]:
        """Variable and field paths the template reads, e.g. ``$labels.job``, ``.Value``.

        Declarations (``$x := ...``) are not reads; ``.Labels.job`` is reported as
        written even inside ``range``/``with``, where the cursor is something else.
        """
        declared = {id(d) for n in _walk(self.root) if isinstance(n, PipeNode) for d in n.decls}
        paths: set[str] = set()
        for node in _walk(self.root):
            if isinstance(node, VariableNode) and id(node) not in declared:
                paths.add(".".join(node.idents))
            elif isinstance(node, FieldNode):
                paths.add(str(node))
        return frozenset(paths)

    def reads_value(self) -> bool:
        """Whether the output can depend on the alert's value.

        True when the template reads ``$value``/``.Value``, the root variable ``$``
        or the cursor ``.`` itself (which hands the value on); a template that
        reads none of these renders the same for every value of one label set.
        """
        for path in self.variables():
            head = path.split(".")[0] if not path.startswith(".") else "." + path.split(".")[1]
            if head in ("$value", ".Value", "$"):
                return True
        return any(isinstance(node, DotNode) for node in _walk(self.root))


def parse_template(text: str) -> Template:
    """Parse ``text`` as Prometheus would; raise ``TemplateSyntaxError`` if it would refuse it."""
    if len(text) > MAX_TEMPLATE_LENGTH:
        raise TemplateSyntaxError(
            f"template too long: {len(text)} characters (the limit is {MAX_TEMPLATE_LENGTH})",
            MAX_TEMPLATE_LENGTH, len(text))
    try:
        root = _Parser(text).parse()
    except RecursionError:  # only reachable when the caller's stack is already deep
        raise TemplateSyntaxError("template nesting too deep to parse", 0, max(len(text), 1)) \
            from None
    return Template(text, root)
