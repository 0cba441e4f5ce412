"""The parser front door: one LALR Lark instance, errors turned into diagnostics.

``parse_rule_file`` reads a ``.rules`` file and ``parse_expression`` one
expression (from a YAML string, the command line, a test file). Neither raises
on bad input: each returns the AST it could build plus diagnostics.

Error recovery in rule files works at the level of items: when a syntax error
occurs inside an alert, a record, a metric declaration or a group header, the
partial item is dropped from the parser's stacks, the rest of its text is
skipped (to its closing brace, or for a record to the next rule), and parsing
resumes. So one file reports every broken rule, not only the first.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from lark import Lark, Token
from lark.exceptions import UnexpectedCharacters, UnexpectedInput, UnexpectedToken

from monitoring.dsl import ast
from monitoring.dsl.build import AstBuilder, BuildContext
from monitoring.dsl.diagnostics import Diagnostic, Severity
from monitoring.dsl.limits import LIMITS
from monitoring.dsl.source import OffsetMap, SourceFile, Span

_GRAMMAR = resources.files("monitoring.dsl").joinpath("grammar.lark").read_text("utf-8")

_lock = threading.Lock()
_builder = AstBuilder()
_parser: Lark | None = None
_comments: list[Token] = []


def _on_comment(tok: Token) -> Token:
    _comments.append(tok)
    return tok


def _lark() -> Lark:
    global _parser
    if _parser is None:
        _parser = Lark(
            _GRAMMAR,
            parser="lalr",
            lexer="contextual",
            start=["rule_file", "expr_only"],
            transformer=_builder,
            maybe_placeholders=False,
            propagate_positions=False,
            lexer_callbacks={"COMMENT": _on_comment},
            # The parse tables are cached in the temporary folder, keyed by a hash of
            # the grammar and options: start-up falls from ~70 ms to ~10 ms.
            cache=True,
        )
    return _parser


class _FastPath:
    """A lean LALR driver over Lark's own tables, for input without errors.

    Lark's generic loop counts lines for every token, hashes grammar rules on
    every reduction and wraps each step in error handling; rule files are parsed
    far more often than they are broken, so the common case runs this loop
    instead. It uses the same parse table, the same per-state scanners (the
    contextual lexer) and the same callbacks (the AST builder); positions are
    plain offsets; unit reductions of the precedence chain skip their no-op
    callbacks. On the first error it gives up, and the caller parses again with
    Lark, which produces the diagnostics and recovers.
    """

    def __init__(self, lark: Lark) -> None:
        from lark.parse_tree_builder import ExpandSingleChild
        from lark.parsers.lalr_analysis import Shift

        frontend: Any = lark.parser
        lalr: Any = frontend.parser.parser  # lark.parsers.lalr_parser._Parser
        table = lalr.parse_table
        callbacks = lalr.callbacks
        # Per state: terminal or rule name -> next state (shift / goto, an int) or
        # (size, callback or None for a pass-through, rule name) for a reduction.
        self.states: dict[int, dict[str, Any]] = {}
        for state, actions in table.states.items():
            compiled: dict[str, Any] = {}
            for symbol, (kind, arg) in actions.items():
                # Plain str keys: Lark's are Token objects whose __eq__ is slow.
                if kind is Shift:
                    compiled[str(symbol)] = arg
                else:
                    size = len(arg.expansion)
                    cb = callbacks[arg]
                    passthrough = size == 1 and isinstance(cb, ExpandSingleChild)
                    compiled[str(symbol)] = (size, None if passthrough else cb,
                                             str(arg.origin.name))
            self.states[state] = compiled
        self.start_states: dict[str, int] = table.start_states
        self.end_states: dict[str, int] = table.end_states
        lexer: Any = frontend.lexer
        # Compiled alternations of the terminals each parser state accepts.
        self.scanners = {state: tuple(lx.scanner._mres) for state, lx in lexer.lexers.items()}
        self.keyword_callbacks = {state: lx.callback for state, lx in lexer.lexers.items()}
        self.ignore = frozenset(lexer.root_lexer.ignore_types)
        # (state below, top state, lookahead) -> top state after its unit reductions.
        self.unit_chains: dict[tuple[int, int, str], int] = {}

    def parse(self, text: str, start: str, comments: list[Token] | None) -> Any:
        """The parse result, or ``_FAILED`` at the first error."""
        states = self.states
        scanners = self.scanners
        keyword_callbacks = self.keyword_callbacks
        ignore = self.ignore
        unit_chains = self.unit_chains
        end_state = self.end_states[start]
        state_stack = [self.start_states[start]]
        value_stack: list[Any] = []
        new_token = str.__new__
        pos = 0
        n = len(text)
        skip = _SKIP.match
        while True:
            state = state_stack[-1]
            gap = skip(text, pos)
            if gap is not None:  # blanks and comments, in one step
                if comments is not None and "#" in gap.group(0):
                    for c in _COMMENT.finditer(text, pos, gap.end()):
                        comments.append(_token(new_token, "COMMENT", c.group(0), c.start(),
                                               c.end()))
                pos = gap.end()
            if pos < n:
                for mre in scanners[state]:
                    m = mre.match(text, pos)
                    if m is not None:
                        break
                else:
                    return _FAILED
                value = m.group(0)
                type_ = m.lastgroup
                end = pos + len(value)
                if type_ in ignore:
                    if comments is not None and type_ == "COMMENT":
                        comments.append(_token(new_token, type_, value, pos, end))
                    pos = end
                    continue
                tok = _token(new_token, type_, value, pos, end)
                callback = keyword_callbacks[state].get(type_)
                if callback is not None:
                    tok = callback(tok)
                    type_ = tok.type
                pos = end
                is_end = False
            else:
                tok = _token(new_token, "$END", "", n, n)
                type_ = "$END"
                is_end = True
            while True:
                action = states[state_stack[-1]].get(type_)
                if action is None:
                    return _FAILED
                if action.__class__ is int:
                    if is_end:
                        return _FAILED
                    state_stack.append(action)
                    value_stack.append(tok)
                    break
                size, cb, origin = action
                if cb is None:  # unit reductions of the precedence chain, followed at once
                    key = (state_stack[-2], state_stack[-1], type_)
                    top = unit_chains.get(key)
                    if top is None:
                        below = key[0]
                        top = states[below][origin]
                        nxt = states[top].get(type_)
                        while (nxt.__class__ is tuple and nxt[1] is None and top != end_state):
                            top = states[below][nxt[2]]
                            nxt = states[top].get(type_)
                        unit_chains[key] = top
                    state_stack[-1] = top
                else:
                    if size:
                        children = value_stack[-size:]
                        del state_stack[-size:]
                        del value_stack[-size:]
                    else:
                        children = []
                    value_stack.append(cb(children))
                    state_stack.append(states[state_stack[-1]][origin])
                if is_end and state_stack[-1] == end_state:
                    return value_stack[-1]


_FAILED = object()
_SKIP = re.compile(r"(?:[ \t\f\r\n]+|#[^\n]*)+")  # the grammar's ignored WS and COMMENT
_COMMENT = re.compile(r"#[^\n]*")


def _token(new: Any, type_: str, value: str, start: int, end: int) -> Token:
    tok: Token = new(Token, value)
    tok.type = type_
    tok.value = value
    tok.start_pos = start
    tok.end_pos = end
    tok.line = None
    return tok


_fast: _FastPath | None = None


def _fast_path() -> _FastPath:
    global _fast
    if _fast is None:
        _fast = _FastPath(_lark())
    return _fast


def grammar_text() -> str:
    """The grammar, for documentation and tooling."""
    return _GRAMMAR


@dataclass(frozen=True, slots=True)
class Comment:
    """A ``#`` comment of a rule file: its text (with the ``#``) and its span."""

    text: str
    span: Span


@dataclass(slots=True)
class ParseResult:
    """What a parse produced: a node (maybe partial) and its diagnostics."""

    node: Any
    diagnostics: list[Diagnostic]
    comments: list[Comment] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether no error was reported."""
        return not any(d.severity is Severity.ERROR for d in self.diagnostics)


def parse_expression(
    text: str, source: SourceFile | None = None, offsets: OffsetMap | None = None
) -> ParseResult:
    """Parse one expression.

    ``text`` may be a value taken from a larger file (a YAML string); then
    ``source`` is that file and ``offsets`` maps positions in ``text`` to
    positions in it, so diagnostics point into the file.
    """
    if source is None:
        source = SourceFile("<expr>", text)
    if offsets is None:
        offsets = OffsetMap(0)
    limit = _check_limits(text, source, offsets, LIMITS.max_expression_length, "expression")
    if limit is not None:
        return ParseResult(None, [limit])
    ctx = BuildContext(source, offsets)
    node: Any
    with _lock:
        _builder.reset(ctx)
        try:
            node = _fast_path().parse(text, "expr_only", None)
            if node is _FAILED or ctx.diagnostics:
                _builder.reset(ctx := BuildContext(source, offsets))
                node = _lark().parse(text, start="expr_only")
            node = _builder.guard_depth(node)
        except UnexpectedInput as e:
            ctx.diagnostics.append(_describe(e, text, ctx))
            node = None
        except RecursionError:
            ctx.diagnostics.append(_too_deep(ctx, text))
            node = None
        _comments.clear()
    return ParseResult(node, ctx.diagnostics)


def parse_rule_file(source: SourceFile) -> ParseResult:
    """Parse a whole ``.rules`` file, recovering after errors (see the module docstring)."""
    limit = _check_limits(source.text, source, OffsetMap(0), LIMITS.max_file_bytes, "file")
    if limit is not None:
        return ParseResult(ast.RuleFile(ast.FileKind.DSL), [limit])
    ctx = BuildContext(source, OffsetMap(0))
    recovery = _Recovery(source.text, ctx)
    node: Any
    with _lock:
        _builder.reset(ctx)
        _comments.clear()
        try:
            node = _fast_path().parse(source.text, "rule_file", _comments)
            if node is _FAILED:
                _builder.reset(ctx := BuildContext(source, OffsetMap(0)))
                recovery = _Recovery(source.text, ctx)
                _comments.clear()
                node = _lark().parse(source.text, start="rule_file", on_error=recovery)
        except UnexpectedInput as e:
            if not recovery.errors:
                ctx.diagnostics.append(_describe(e, source.text, ctx))
            node = ast.RuleFile(ast.FileKind.DSL)
        except RecursionError:
            ctx.diagnostics.append(_too_deep(ctx, source.text))
            node = ast.RuleFile(ast.FileKind.DSL)
        comments = _collect_comments(source)
    if not isinstance(node, ast.RuleFile):  # pragma: no cover - defensive
        node = ast.RuleFile(ast.FileKind.DSL)
    return ParseResult(node, ctx.diagnostics, comments)


def _collect_comments(source: SourceFile) -> list[Comment]:
    # Recovery may re-lex a stretch of text; keep each comment once, in order.
    seen: set[int] = set()
    out: list[Comment] = []
    for tok in sorted(_comments, key=lambda t: t.start_pos or 0):
        start = tok.start_pos or 0
        if start in seen:
            continue
        seen.add(start)
        out.append(Comment(str(tok), Span(source, start, tok.end_pos or start)))
    _comments.clear()
    return out


def _check_limits(
    text: str, source: SourceFile, offsets: OffsetMap, max_len: int, what: str
) -> Diagnostic | None:
    if len(text) > max_len:
        start = offsets(0)
        return Diagnostic(
            "limit/too-large",
            Severity.ERROR,
            f"{what} is {len(text):,} characters long; the limit is {max_len:,}",
            Span(source, start, start),
        )
    return None


def _too_deep(ctx: BuildContext, text: str) -> Diagnostic:
    start = ctx.offsets(0)
    return Diagnostic("limit/too-deep", Severity.ERROR,
                      "expression is nested too deeply to parse", Span(ctx.source, start, start))


# ---------------------------------------------------------------- error text

_READABLE = {
    "IDENT": "identifier",
    "NUMBER": "number",
    "DURATION": "duration",
    "PERCENT": "percentage",
    "STRING": "string",
    "CMP_OP": "comparison operator",
    "MATCH_OP": "label matcher operator (=, !=, =~, !~)",
    "EQ": "'='",
    "PLUS": "'+'",
    "MINUS": "'-'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "MOD": "'%'",
    "POW": "'^'",
    "AT": "'@'",
    "LPAREN": "'('",
    "RPAREN": "')'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "LSQB": "'['",
    "RBRACKET": "']'",
    "COLON": "':'",
    "COMMA": "','",
    "AGG_OP": "aggregation (sum, avg, ...)",
    "WEIGHTED": "'weighted'",
    "$END": "end of input",
}
_OPERATORS = {"OR", "AND", "UNLESS", "CMP_OP", "PLUS", "MINUS", "STAR", "SLASH", "MOD", "POW",
              "ATAN2"}
_POSTFIX = {"LSQB", "OFFSET", "AT"}


def readable(terminal: str) -> str:
    """A user-facing name for a grammar terminal."""
    if terminal in _READABLE:
        return _READABLE[terminal]
    if terminal.startswith("KW_"):
        return repr(terminal[3:].lower())
    return repr(terminal.lower())


def _expected_list(expected: set[str]) -> list[str]:
    names: list[str] = []
    rest = set(expected)
    if len(rest & _OPERATORS) >= 4:
        rest -= _OPERATORS
        names.append("binary operator")
    if len(rest & _POSTFIX) >= 2:
        rest -= _POSTFIX
        names.append("'[', 'offset' or '@'")
    if {"NUMBER", "IDENT", "STRING", "LPAREN"} <= rest:
        rest -= {"NUMBER", "IDENT", "STRING", "LPAREN", "DURATION", "PERCENT", "LBRACE", "AGG_OP",
                 "WEIGHTED", "PLUS", "MINUS"}
        names.append("expression")
    keywords = sorted(t for t in rest if t.startswith("KW_"))
    if len(keywords) >= 3:
        rest -= set(keywords)
        shown = ", ".join(readable(k) for k in keywords[:3])
        names.append(f"another field ({shown}, ...)")
    names.extend(sorted(readable(t) for t in rest))
    return names


def _token_text(tok: Token) -> str:
    if tok.type == "$END":
        return "end of input"
    value = str(tok)
    if len(value) > 30:
        value = value[:27] + "..."
    kind = readable(tok.type)
    if tok.type in ("IDENT", "NUMBER", "DURATION", "PERCENT", "STRING"):
        return f"{kind} {value!r}" if tok.type != "STRING" else f"string {value}"
    return repr(value) if not kind.startswith("'") else kind


def _describe(e: UnexpectedInput, text: str, ctx: BuildContext) -> Diagnostic:
    """Turn a Lark exception into a located ``syntax/`` diagnostic."""
    if isinstance(e, UnexpectedCharacters):
        pos = e.pos_in_stream or 0
        ch = text[pos] if pos < len(text) else ""
        span = _span(ctx, pos, pos + 1)
        if ch in "\"'`":
            return Diagnostic("syntax/unterminated-string", Severity.ERROR,
                              "unterminated string literal", span,
                              ("close the string with the same quote on the same line",))
        expected = _expected_list(set(e.allowed or ()))
        return Diagnostic(
            "syntax/unexpected-character",
            Severity.ERROR,
            f"unexpected character {ch!r}" if ch else "unexpected end of input",
            span,
            (f"expected {_join(expected)}",) if expected else (),
        )
    assert isinstance(e, UnexpectedToken)
    tok = e.token
    try:
        ip = e.interactive_parser
        expected_set = set(ip.accepts()) if ip else set(e.expected)  # type: ignore[no-untyped-call]
    except Exception:  # accepts() replays the parser and may itself fail on odd states
        expected_set = set(e.expected)
    expected = _expected_list(expected_set)
    hints: list[str] = [f"expected {_join(expected)}"] if expected else []
    if tok.type == "$END":
        pos = len(text.rstrip())
        span = _span(ctx, max(pos - 1, 0), pos) if pos else _span(ctx, 0, 0)
        if "RPAREN" in expected_set:
            hints.append("an opening parenthesis is never closed")
        elif "RBRACE" in expected_set:
            hints.append("a '{' is never closed")
        return Diagnostic("syntax/unexpected-eof", Severity.ERROR, "unexpected end of input",
                          span, tuple(hints))
    span = _span(ctx, tok.start_pos or 0, tok.end_pos or 0)
    previous = _previous_token(e)
    if previous is not None and previous.type == "IDENT" and str(previous) in _RULE_WORDS:
        hints.append(f"the expression before {str(previous)!r} is incomplete; "
                     f"{str(previous)!r} was read as a metric name")
    if tok.type in ("RBRACE", "$END") or tok.type.startswith("KW_"):
        if "RPAREN" in expected_set:
            hints.append("a '(' before this point is not closed")
        elif "RBRACKET" in expected_set:
            hints.append("a '[' before this point is not closed")
    if ((tok.type == "MATCH_OP" and str(tok) == "=") or tok.type == "EQ") and (
        "CMP_OP" in expected_set
    ):
        hints.append("use '==' to compare values")
    return Diagnostic("syntax/unexpected-token", Severity.ERROR,
                      f"unexpected {_token_text(tok)}", span, tuple(hints))


_RULE_WORDS = frozenset({
    "alert", "record", "group", "metric", "when", "recover_when", "for", "keep_firing_for",
    "severity", "summary", "description", "runbook", "notify", "cooldown", "escalate", "no_data",
    "labels", "annotations",
})


def _previous_token(e: UnexpectedToken) -> Token | None:
    ip = e.interactive_parser
    if ip is None:
        return None
    values = ip.parser_state.value_stack
    if values and isinstance(values[-1], Token):
        return values[-1]
    return None


def _join(names: list[str]) -> str:
    if len(names) > 8:
        names = [*names[:8], "..."]
    if len(names) == 1:
        return names[0]
    return "one of " + ", ".join(names)


def _span(ctx: BuildContext, start: int, end: int) -> Span:
    s = ctx.offsets(start)
    e = ctx.offsets(end - 1) + 1 if end > start else s
    return Span(ctx.source, s, e)


# ---------------------------------------------------------------- recovery

_OPENERS = {"KW_ALERT", "KW_RECORD", "KW_METRIC", "KW_GROUP", "KW_SCRAPE_INTERVAL"}
_RULE_START = ("alert", "record", "}", "labels", "limit", "query_offset")
_TOP_START = ("group", "metric", "scrape_interval")


class _Recovery:
    """Lark ``on_error`` callback: records the error, drops the broken item, skips its text."""

    def __init__(self, text: str, ctx: BuildContext) -> None:
        self.text = text
        self.ctx = ctx
        self.errors = 0

    def __call__(self, e: UnexpectedInput) -> bool:
        self.errors += 1
        if len(self.ctx.diagnostics) >= LIMITS.max_errors_per_file:
            return False
        self.ctx.diagnostics.append(_describe(e, self.text, self.ctx))
        ip = e.interactive_parser
        if ip is None:
            return False
        if isinstance(e, UnexpectedToken):
            if e.token.type == "$END":
                return self._close_at_end(ip)
            error_pos = e.token.start_pos or 0
        else:
            error_pos = e.pos_in_stream
        state = ip.parser_state
        values: list[Any] = state.value_stack
        opener = None
        for i in range(len(values) - 1, -1, -1):
            v = values[i]
            if isinstance(v, Token) and v.type in _OPENERS:
                opener = i
                break
        depth = 0
        if opener is not None:
            popped = values[opener:]
            depth = sum(1 for v in popped if isinstance(v, Token) and v.type == "LBRACE") - sum(
                1 for v in popped if isinstance(v, Token) and v.type == "RBRACE")
            kind = values[opener].type
            del values[opener:]
            del state.state_stack[opener + 1 :]
            new_pos = self._skip(error_pos, depth, kind)
        else:
            new_pos = _next_line_starting(self.text, error_pos, _TOP_START)
        lexer_state = ip.lexer_thread.state
        assert lexer_state is not None
        current = lexer_state.line_ctr.char_pos
        if new_pos > current:
            lexer_state.line_ctr.feed(self.text[current:new_pos])
        elif isinstance(e, UnexpectedToken) and new_pos <= error_pos:
            # The offending token itself starts the next item: give it back.
            table = state.parse_conf.parse_table.states[state.position]
            if e.token.type in table:
                ip.feed_token(e.token)
        return True

    def _skip(self, pos: int, depth: int, kind: str) -> int:
        """Where to resume after dropping a broken item that began with ``kind``.

        Normally just past the brace that closes the item; but a line that starts
        a sibling item (``alert``, ``record``; or ``group``, ``metric`` at the top)
        ends the broken one even when a closing brace is missing.
        """
        text = self.text
        rule_level = kind in ("KW_ALERT", "KW_RECORD")
        siblings = ("alert", "record") if rule_level else _TOP_START
        next_sibling = _next_line_starting(text, pos, siblings)
        if kind == "KW_RECORD" and depth == 0:
            return _next_line_starting(text, pos, _RULE_START)
        if kind == "KW_SCRAPE_INTERVAL":
            return next_sibling
        if depth == 0:
            brace = _scan_to(text, pos, "{")
            if brace < 0 or brace > next_sibling:
                return next_sibling
            pos, depth = brace + 1, 1
        return min(_matching_close(text, pos, depth), next_sibling)

    def _close_at_end(self, ip: Any) -> bool:
        # At end of input inside an open block: drop everything back to the file level.
        state = ip.parser_state
        values = state.value_stack
        for i, v in enumerate(values):
            if isinstance(v, Token) and v.type in _OPENERS:
                del values[i:]
                del state.state_stack[i + 1 :]
                return True
        return False


def _scan_to(text: str, pos: int, target: str) -> int:
    """Index of the next ``target`` character outside strings and comments, or -1."""
    i, n = pos, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'`":
            i = _skip_string(text, i)
            continue
        if ch == "#":
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
            continue
        if ch == target:
            return i
        i += 1
    return -1


def _matching_close(text: str, pos: int, depth: int) -> int:
    """Position just past the ``}`` that closes ``depth`` open braces."""
    i, n = pos, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'`":
            i = _skip_string(text, i)
            continue
        if ch == "#":
            nl = text.find("\n", i)
            i = n if nl < 0 else nl
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _skip_string(text: str, i: int) -> int:
    quote = text[i]
    j = i + 1
    n = len(text)
    while j < n:
        ch = text[j]
        if ch == "\\" and quote != "`":
            j += 2
            continue
        if ch == quote:
            return j + 1
        if ch == "\n" and quote != "`":
            return j
        j += 1
    return n


def _next_line_starting(text: str, pos: int, words: tuple[str, ...]) -> int:
    """Offset of the first line at or after ``pos`` whose first word is one of ``words``.

    The line holding ``pos`` counts only if that word starts at ``pos`` or later,
    so recovery always moves forward.
    """
    i = text.rfind("\n", 0, pos)
    while True:
        j = i + 1
        while j < len(text) and text[j] in " \t\r":
            j += 1
        if j >= pos:
            for w in words:
                if text.startswith(w, j) and (
                    w == "}" or j + len(w) >= len(text)
                    or not (text[j + len(w)].isalnum() or text[j + len(w)] in "_:")
                ):
                    return j
        i = text.find("\n", j)
        if i < 0:
            return len(text)
