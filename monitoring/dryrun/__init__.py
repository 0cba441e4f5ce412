"""``monitoring dry-run``: backtest a rule set over stored history.

Every alerting rule runs through the real alert state machine
(:mod:`monitoring.engine.alerts`) at its group's evaluation times, evaluated
vectorised in time chunks; the outcome is a :class:`~monitoring.dryrun.report.DryRunReport`
that the terminal, JSON and HTML renderers show. See docs/dryrun.md.
"""

from __future__ import annotations
