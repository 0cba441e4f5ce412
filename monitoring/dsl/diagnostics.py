"""One diagnostic type for every phase: parsing, YAML, schemas, type checking and lint.

Errors are data first and text second (as in sqlglot, OPA and pint): a
:class:`Diagnostic` holds a stable code (``family/name``), a severity, a message,
a span and hints; renderers (:mod:`monitoring.dsl.render`) turn a list of them
into text with a caret, JSON or SARIF. Tests assert on the structured fields and
on golden renderings.
"""

from __future__ import annotations

import difflib
import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from monitoring.dsl.source import SourceFile, Span


class Severity(enum.IntEnum):
    """How bad a finding is; ``ERROR`` makes ``monitoring lint`` exit with 1."""

    INFO = 1
    WARNING = 2
    ERROR = 3

    @property
    def label(self) -> str:
        """The word used in rendered output."""
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """A located finding with a stable code.

    ``code`` is ``family/name`` (``syntax/unexpected-token``, ``type/mismatch``,
    ``alert/missing-summary``); the family names the phase or topic, so users can
    suppress or grep by it. ``span`` is ``None`` only for findings about a whole
    run (for example "no input files").
    """

    code: str
    severity: Severity
    message: str
    span: Span | None
    hints: tuple[str, ...] = ()
    path: str | None = None  # file name when there is no span (unreadable file)
    related: tuple[tuple[str, Span], ...] = field(default=())

    @property
    def file(self) -> str:
        """Name of the file the finding is in ("" when unknown)."""
        if self.span is not None:
            return self.span.source.name
        return self.path or ""

    def sort_key(self) -> tuple[str, int, int, str]:
        """Order by file, then position, then code."""
        start = self.span.start if self.span is not None else -1
        end = self.span.end if self.span is not None else -1
        return (self.file, start, end, self.code)

    def location(self) -> str:
        """``file:line:col`` (or just the file name)."""
        if self.span is None:
            return self.file or "<input>"
        line, col = self.span.source.line_col(self.span.start)
        return f"{self.span.source.name}:{line}:{col}"


DEFAULT_ERROR_LIMIT = 200


class DiagnosticBag:
    """Collects diagnostics for a run and stops collecting after a limit.

    Every error of a run is reported, not only the first, up to ``limit``
    findings; beyond it the bag counts what it dropped so the renderer can say
    "and N more".
    """

    def __init__(self, limit: int = DEFAULT_ERROR_LIMIT) -> None:
        self.limit = limit
        self._items: list[Diagnostic] = []
        self.dropped = 0

    def add(self, diagnostic: Diagnostic) -> None:
        """Record a finding (or count it as dropped past the limit)."""
        if len(self._items) >= self.limit:
            self.dropped += 1
            return
        self._items.append(diagnostic)

    def extend(self, diagnostics: Iterable[Diagnostic]) -> None:
        """Record several findings."""
        for d in diagnostics:
            self.add(d)

    def error(
        self, code: str, message: str, span: Span | None, *hints: str, path: str | None = None
    ) -> None:
        """Record an error."""
        self.add(Diagnostic(code, Severity.ERROR, message, span, tuple(hints), path))

    def warning(self, code: str, message: str, span: Span | None, *hints: str) -> None:
        """Record a warning."""
        self.add(Diagnostic(code, Severity.WARNING, message, span, tuple(hints)))

    def info(self, code: str, message: str, span: Span | None, *hints: str) -> None:
        """Record an informational finding."""
        self.add(Diagnostic(code, Severity.INFO, message, span, tuple(hints)))

    @property
    def has_errors(self) -> bool:
        """Whether any error-level finding was recorded."""
        return any(d.severity is Severity.ERROR for d in self._items)

    def sorted(self) -> list[Diagnostic]:
        """The findings ordered by file and position, duplicates removed."""
        seen: set[tuple[object, ...]] = set()
        out: list[Diagnostic] = []
        for d in sorted(self._items, key=Diagnostic.sort_key):
            key = (d.code, d.message, d.sort_key())
            if key in seen:
                continue
            seen.add(key)
            out.append(d)
        return out

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


def did_you_mean(word: str, candidates: Iterable[str]) -> str | None:
    """Return a "did you mean X?" hint for a misspelt name, or ``None``."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    if not matches:
        lowered = {c.lower(): c for c in candidates}
        if word.lower() in lowered:
            matches = [lowered[word.lower()]]
    return f"did you mean {matches[0]!r}?" if matches else None


def whole_file(source: SourceFile) -> Span:
    """A zero-width span at the start of a file, for file-level findings."""
    return Span(source, 0, 0)
