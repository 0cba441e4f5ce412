"""Inhibition: a firing root-cause alert silences the alerts it explains.

An inhibition rule (Alertmanager's ``inhibit_rules``) says: while an alert
matching ``source_matchers`` fires, alerts matching ``target_matchers`` that
have the same values for every label in ``equal`` are not notified (a label
missing on both sides counts as equal). An alert never inhibits itself, and as in
Alertmanager, an alert that matches both sides of a rule is not inhibited by
another alert that matches both sides (two such alerts would mute each other).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from monitoring.notify.matchers import Matcher, matches_all
from monitoring.notify.model import FIRING, Alert


@dataclass(frozen=True, slots=True)
class InhibitRule:
    """One inhibition rule."""

    source_matchers: tuple[Matcher, ...]
    target_matchers: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()

    def _key(self, labels: Mapping[str, str]) -> tuple[str, ...]:
        return tuple(labels.get(name, "") for name in self.equal)


class Inhibitor:
    """Answers "which firing alerts inhibit this one?" for the current set of alerts."""

    def __init__(self, rules: Sequence[InhibitRule]) -> None:
        self.rules = tuple(rules)
        # per rule: equal-label values -> (fingerprint, whether it matches the target side)
        self._sources: list[dict[tuple[str, ...], list[tuple[str, bool]]]] = \
            [{} for _ in self.rules]

    def update(self, alerts: Iterable[Alert]) -> None:
        """Index the firing alerts that can act as sources (call before :meth:`inhibited_by`)."""
        self._sources = [{} for _ in self.rules]
        if not self.rules:
            return
        for alert in alerts:
            if alert.status != FIRING:
                continue
            for i, rule in enumerate(self.rules):
                if matches_all(rule.source_matchers, alert.labels):
                    both = matches_all(rule.target_matchers, alert.labels)
                    self._sources[i].setdefault(rule._key(alert.labels), []).append(
                        (alert.fingerprint, both))

    def inhibited_by(self, labels: Mapping[str, str], fingerprint: str) -> list[str]:
        """Fingerprints of the firing alerts that inhibit an alert with ``labels``."""
        out: list[str] = []
        for i, rule in enumerate(self.rules):
            if not matches_all(rule.target_matchers, labels):
                continue
            two_sided = matches_all(rule.source_matchers, labels)
            for source, both in self._sources[i].get(rule._key(labels), ()):
                if source != fingerprint and not (two_sided and both) and source not in out:
                    out.append(source)
        return out
