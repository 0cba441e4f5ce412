"""The alert state machine: inactive -> pending -> firing -> resolved, as Prometheus runs it.

Vectorised over evaluation steps and alert series, with our additions
(recovery condition, no-data policy, flapping). See docs/alerts.md.
"""

from __future__ import annotations

from monitoring.engine.alerts.machine import DUPLICATE_LABELSET, AlertMachine
from monitoring.engine.alerts.model import (
    NODATA_LABEL,
    RESOLVED_RETENTION_MS,
    Advance,
    Alert,
    AlertRuleSpec,
    AlertState,
    RuleOutput,
    Transition,
)

__all__ = [
    "DUPLICATE_LABELSET",
    "NODATA_LABEL",
    "RESOLVED_RETENTION_MS",
    "Advance",
    "Alert",
    "AlertMachine",
    "AlertRuleSpec",
    "AlertState",
    "RuleOutput",
    "Transition",
]
