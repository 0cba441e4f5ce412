"""Which alert row each result series feeds, for a whole result at once.

Live evaluation advances every alerting rule one step per evaluation with
nearly the same result series each time, a hundred or more per rule (the
series the condition looks at, most of them not firing). Looking each one up
in Python dictionaries at every step was most of the machine's work.
:class:`SeriesRows` numbers every series and alert identity once, and keeps
arrays from series to identity and from identity to row, so one step maps
all of its series with a few NumPy gathers. The arrays from identities to
rows and from rows to their source series follow the machine's rows, which
change only when an alert appears or is forgotten: they are rebuilt then
(``stale``), from the machine's own dictionaries, in time proportional to
its alerts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from monitoring.engine.model import Labels

Ints = npt.NDArray[np.int64]

LIMIT = 200_000
"""Series numbered at most; past it the numbering starts afresh (series churn)."""


class SeriesRows:
    """Series and identity numbers of one :class:`~.machine.AlertMachine`."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.sid: dict[Labels, int] = {}
        self.sid_iid = np.zeros(0, np.int64)  # series number -> identity number
        self.iid: dict[Labels, int] = {}
        self.identities: list[Labels] = []  # identity number -> identity
        self.iid_row = np.zeros(0, np.int64)  # identity number -> row, or -1
        self.row_sid = np.zeros(0, np.int64)  # row -> series number of its source, or -1
        self.stale = True

    def numbers(self, labels: Sequence[Labels], identity: Callable[[Labels], Labels]) -> Ints:
        """The series numbers of ``labels``, numbering new series (and identities)."""
        if len(self.sid) > LIMIT:
            self._reset()
        get = self.sid.get
        sids = np.fromiter((get(s, -1) for s in labels), dtype=np.int64, count=len(labels))
        new = np.flatnonzero(sids < 0).tolist()
        if not new:
            return sids
        extra: list[int] = []
        for i in new:
            s = labels[i]
            sid = self.sid.get(s)
            if sid is None:
                ident = identity(s)
                iid = self.iid.get(ident)
                if iid is None:
                    iid = self.iid[ident] = len(self.identities)
                    self.identities.append(ident)
                sid = self.sid[s] = len(self.sid)
                extra.append(iid)
            sids[i] = sid
        self.sid_iid = np.concatenate([self.sid_iid, np.asarray(extra, dtype=np.int64)])
        self.stale = True
        return sids

    def refresh(self, rows: Mapping[Labels, int], sources: Sequence[Labels]) -> None:
        """Rebuild the row arrays from the machine's rows and sources, if they changed."""
        if not self.stale:
            return
        self.iid_row = np.full(len(self.identities), -1, np.int64)
        for ident, row in rows.items():
            iid = self.iid.get(ident)
            if iid is not None:
                self.iid_row[iid] = row
        get = self.sid.get
        self.row_sid = np.fromiter((get(s, -1) for s in sources), dtype=np.int64,
                                   count=len(sources))
        self.stale = False

    def rows(self, sids: Ints) -> tuple[Ints, Ints]:
        """Rows of the series (-1: their identity has none), and which series feed a row.

        The second array: positions of series that feed a row whose source is
        another series (the machine must note the change).
        """
        rows = self.iid_row[self.sid_iid[sids]]
        have = np.flatnonzero(rows >= 0)
        moved = have[self.row_sid[rows[have]] != sids[have]]
        return rows, moved
