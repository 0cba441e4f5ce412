"""Source files and spans: the coordinates every diagnostic and AST node carries.

Positions are born in the lexer as character offsets and never dropped. A
:class:`Span` is a half-open ``[start, end)`` range of character offsets into one
:class:`SourceFile`; line and column numbers (1-based, counted in characters) are
computed on demand, so building spans stays cheap on the hot path.

Expressions embedded in YAML strings are parsed from the scalar's *value*, which
differs from the file text (indentation, quotes, escapes, folding). An
:class:`OffsetMap` translates value offsets back into file offsets so that a
caret lands under the right character of the file, block scalars included.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from pathlib import Path

_NEWLINE = re.compile("\n")


class SourceFile:
    """The text of one input file (or of standard input) with a line index.

    The line index is built on first use: a clean file needs none.
    """

    __slots__ = ("_starts", "name", "text")

    def __init__(self, name: str, text: str) -> None:
        self.name = name
        self.text = text
        self._starts: list[int] | None = None

    @property
    def _line_starts(self) -> list[int]:
        starts = self._starts
        if starts is None:
            starts = [0]
            starts.extend(m.end() for m in _NEWLINE.finditer(self.text))
            self._starts = starts
        return starts

    @classmethod
    def read(cls, path: Path | str) -> SourceFile:
        """Read ``path`` as UTF-8; undecodable bytes become U+FFFD instead of failing."""
        p = Path(path)
        return cls(str(p), p.read_bytes().decode("utf-8", errors="replace"))

    def line_col(self, offset: int) -> tuple[int, int]:
        """Return the 1-based (line, column) of a character offset."""
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self._line_starts, offset) - 1
        return line + 1, offset - self._line_starts[line] + 1

    def offset_of(self, line: int, col: int) -> int:
        """Return the character offset of a 1-based (line, column)."""
        line = max(1, min(line, len(self._line_starts)))
        return min(self._line_starts[line - 1] + max(col, 1) - 1, len(self.text))

    def line_text(self, line: int) -> str:
        """Return the text of a 1-based line without its newline."""
        if line < 1 or line > len(self._line_starts):
            return ""
        start = self._line_starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start : end if end != -1 else len(self.text)].rstrip("\r")

    @property
    def line_count(self) -> int:
        """Number of lines (a trailing newline does not start a new line of text)."""
        return len(self._line_starts)

    def span(self, start: int, end: int) -> Span:
        """Build a span into this file."""
        return Span(self, start, end)

    def __repr__(self) -> str:
        return f"SourceFile({self.name!r})"


class Span:
    """A half-open range ``[start, end)`` of character offsets into ``source``.

    Spans never take part in equality or hashing of the nodes that hold them
    (those fields are declared ``compare=False``), so two ASTs that differ only in
    layout compare equal. A plain slotted class rather than a frozen dataclass:
    the parser creates one per token, and this is several times cheaper.
    Treat spans as immutable.
    """

    __slots__ = ("end", "source", "start")

    def __init__(self, source: SourceFile, start: int, end: int) -> None:
        self.source = source
        self.start = start
        self.end = end

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Span):
            return NotImplemented
        return (self.source is other.source and self.start == other.start
                and self.end == other.end)

    def __hash__(self) -> int:
        return hash((id(self.source), self.start, self.end))

    def __repr__(self) -> str:
        return f"Span(start={self.start}, end={self.end})"

    @property
    def line(self) -> int:
        """1-based line of the first character."""
        return self.source.line_col(self.start)[0]

    @property
    def column(self) -> int:
        """1-based column of the first character."""
        return self.source.line_col(self.start)[1]

    def end_line_col(self) -> tuple[int, int]:
        """1-based (line, column) just past the last character."""
        return self.source.line_col(self.end)

    def text(self) -> str:
        """The source text under the span."""
        return self.source.text[self.start : self.end]

    def cover(self, other: Span) -> Span:
        """The smallest span containing both ``self`` and ``other``."""
        return Span(self.source, min(self.start, other.start), max(self.end, other.end))

    def __str__(self) -> str:
        line, col = self.source.line_col(self.start)
        return f"{self.source.name}:{line}:{col}"


class OffsetMap:
    """Maps offsets in a string value back to offsets in the file it came from.

    ``positions[i]`` is the file offset of value character ``i``; one extra entry
    at the end gives the position just past the value. The identity map with a
    constant shift (DSL files, plain one-line YAML scalars) is the common case
    and is stored as a shift alone.
    """

    __slots__ = ("_positions", "_shift")

    def __init__(self, shift: int = 0, positions: Sequence[int] | None = None) -> None:
        self._shift = shift
        self._positions = positions

    @property
    def shift(self) -> int | None:
        """The constant shift, when this map is one; ``None`` for an aligned map."""
        return self._shift if self._positions is None else None

    def __call__(self, offset: int) -> int:
        """Translate one value offset into a file offset."""
        positions = self._positions
        if positions is None:
            return offset + self._shift
        if offset < 0:
            return positions[0]
        if offset >= len(positions):
            return positions[-1]
        return positions[offset]

    @classmethod
    def align(cls, value: str, text: str, start: int, end: int) -> OffsetMap:
        r"""Align ``value`` with the raw scalar ``text[start:end]`` it was decoded from.

        Works for every YAML scalar style: each value character is matched with the
        next identical source character, so quotes, indentation, escape backslashes
        and folded line breaks are skipped over. A character that cannot be found
        (an escape such as ``\\n`` in a double-quoted string) keeps the position of
        the previous match, which is where a reader would look for it.
        """
        if text[start : start + len(value)] == value:
            return cls(shift=start)
        positions: list[int] = []
        src = start
        last = start
        find = text.find
        for ch in value:
            hit = find(ch, src, end)
            if hit == -1:
                positions.append(last)
                continue
            positions.append(hit)
            last = hit
            src = hit + 1
        positions.append(min(last + 1, end) if value else start)
        return cls(positions=positions)
