"""Compliance presets: the events, fields and retention each framework asks of an audit trail.

A preset is data, not code: which categories and actions it requires (a filter in
``audit_filters.yaml`` can never drop them), which fields each of its events must carry
(PCI DSS 10.2.2) and the retention class its events get. Each requirement names the clause it
supports, so a decision can say *why* an event was kept and ``docs/compliance.md`` can map
every claim to a clause. The presets support controls; they do not certify anything:
scoping, review and legal sign-off stay the operator's job.

The policy, the docs and the tests read this one table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from monitoring.dsl.config import AUDIT_CATEGORIES

DAY_MS = 86_400_000

META_CLASS = "meta"
"""Retention class of the ledger's own events (genesis, key rotation, prune, erasure...)."""
STANDARD_CLASS = "standard"
"""Retention class of events no preset claims: GDPR's shortest justified default."""


@dataclass(frozen=True, slots=True)
class RetentionClass:
    """How long the events of a class are kept, and how long they stay in the hot tables.

    ``retain_ms`` is ``None`` for classes that are never pruned (nor archived: they stay
    hot); ``hot_ms`` is the minimum age before entries may move to the Parquet archive;
    ``hold`` is a legal hold: while set, nothing of the class is pruned or erased.
    """

    name: str
    retain_ms: int | None
    hot_ms: int
    basis: str = ""
    hold: bool = False

    def longer_than(self, other: RetentionClass) -> bool:
        """Whether this class keeps events longer than ``other`` (forever beats any age)."""
        if self.retain_ms is None:
            return other.retain_ms is not None
        return other.retain_ms is not None and self.retain_ms > other.retain_ms


# Months and years are rounded up to the longest calendar span they can cover, so a class
# never prunes an event a day before "12 months" is over in a leap year.
MONTHS_3 = 92 * DAY_MS
MONTHS_12 = 366 * DAY_MS
MONTHS_13 = 397 * DAY_MS
YEARS_6 = (6 * 365 + 2) * DAY_MS
YEARS_7 = (7 * 365 + 2) * DAY_MS


@dataclass(frozen=True, slots=True)
class Clause:
    """A clause a preset supports: its reference, what it asks and how the ledger helps."""

    ref: str
    asks: str
    support: str


@dataclass(frozen=True, slots=True)
class Requirement:
    """Events a preset requires: one category, all its actions or the listed ones.

    An action ending in ``*`` is a prefix (``gdpr.*``).
    """

    category: str
    actions: tuple[str, ...] = ()
    clause: str = ""

    def matches(self, category: str, action: str) -> bool:
        """Whether an event of ``category`` doing ``action`` is required."""
        if category != self.category:
            return False
        if not self.actions:
            return True
        return any(action.startswith(a[:-1]) if a.endswith("*") else action == a
                   for a in self.actions)


@dataclass(frozen=True, slots=True)
class Preset:
    """One compliance framework's demands on the audit trail."""

    name: str
    title: str
    clauses: tuple[Clause, ...]
    requires: tuple[Requirement, ...]
    required_fields: tuple[str, ...]
    """Fields each event of ``field_categories`` must carry (``user_id``, ``outcome``...)."""
    field_categories: tuple[str, ...]
    retention: RetentionClass
    covers: tuple[str, ...]
    """Categories whose events get this preset's retention class."""
    operator_duties: tuple[str, ...]

    def requirement_for(self, category: str, action: str) -> Requirement | None:
        """The first requirement that keeps this event, if any."""
        return next((r for r in self.requires if r.matches(category, action)), None)


USER_FACING = ("authentication", "data_access", "configuration_change", "security",
               "rule_change", "silence", "acknowledgement")
"""Categories of events done by (or against) a person, where 'who' is meaningful."""

ALL_CATEGORIES = AUDIT_CATEGORIES

META_CATEGORIES = ("system", "security")
META_ACTION_PREFIXES = ("ledger.", "key.", "retention.", "gdpr.", "clock.", "alarm.")
"""Actions (of ``system`` or ``security`` events) of the records the ledger writes about
itself: genesis, key rotations, prunes, archives, erasures (``security``/``gdpr.erasure``),
acknowledged alarms, clock jumps. Always recorded, never pruned."""

FIELD_NAMES = {
    "user_id": "user identification",
    "outcome": "success or failure",
    "source": "origination",
    "resource": "affected data, component, resource or service",
}
"""Event fields a preset may require, with the words PCI DSS 10.2.2 uses for them."""


PCI_DSS = Preset(
    name="pci_dss",
    title="PCI DSS v4.0.1, Requirement 10",
    clauses=(
        Clause("10.2.1.1", "log all individual user access to cardholder data",
               "data_access events are always recorded"),
        Clause("10.2.1.2", "log all actions taken by anyone with administrative access",
               "configuration_change, rule_change, silence and acknowledgement events are "
               "always recorded"),
        Clause("10.2.1.3", "log all access to audit logs",
               "data_access events are always recorded; ledger searches and exports should "
               "be logged as data_access events on resource 'audit'"),
        Clause("10.2.1.4", "log all invalid logical access attempts",
               "authentication and security events are always recorded, whatever the "
               "severity or action filter says"),
        Clause("10.2.1.5", "log all changes to identification and authentication credentials",
               "authentication events are always recorded"),
        Clause("10.2.1.6", "log initialization, starting, stopping or pausing of audit logs",
               "system events are always recorded; the ledger writes ledger.open, "
               "key.rotate and retention.prune events itself"),
        Clause("10.2.1.7", "log creation and deletion of system-level objects",
               "system events are always recorded"),
        Clause("10.2.2", "each event records user identification, type, date and time, "
               "success or failure, origination, and the affected data, component, resource "
               "or service",
               "every envelope carries category, action and a UTC timestamp; events of "
               "user-facing categories missing user_id, outcome, source or resource are "
               "flagged by missing_fields"),
        Clause("10.3.2", "protect audit log files from modification",
               "Merkle tree with Ed25519-signed checkpoints: changes are detected (tamper-"
               "evident: changes are not prevented)"),
        Clause("10.3.4", "change-detection on audit logs so existing data cannot be changed "
               "without an alert",
               "startup checks and `monitoring audit verify` report the first bad sequence "
               "number"),
        Clause("10.5.1", "retain audit log history for at least 12 months, the most recent "
               "3 months immediately available",
               "retention class pci_dss: 366 days, 92 days hot; archives stay queryable by "
               "DuckDB"),
        Clause("10.6.1-10.6.3", "correct and consistent time",
               "timestamps are clamped non-decreasing and a clock.backwards event is "
               "recorded when the clock goes back"),
    ),
    requires=(
        Requirement("authentication", (), "10.2.1.4/10.2.1.5"),
        Requirement("data_access", (), "10.2.1.1/10.2.1.3"),
        Requirement("configuration_change", (), "10.2.1.2"),
        Requirement("rule_change", (), "10.2.1.2"),
        Requirement("silence", (), "10.2.1.2"),
        Requirement("acknowledgement", (), "10.2.1.2"),
        Requirement("system", (), "10.2.1.6/10.2.1.7"),
        Requirement("security", (), "10.2.1.4"),
    ),
    required_fields=("user_id", "outcome", "source", "resource"),
    field_categories=USER_FACING,
    retention=RetentionClass("pci_dss", MONTHS_12, MONTHS_3, "PCI DSS 10.5.1"),
    covers=ALL_CATEGORIES,
    operator_duties=(
        "scope the cardholder data environment and send its events to the ledger",
        "review security events daily (10.4.1) and act on the ledger's alarms (10.7.2)",
        "restrict read access to the ledger and its archives (10.3.1)",
        "keep an external anchor in another trust domain (10.3.3)",
        "synchronise the host clock (10.6.1)",
    ),
)

HIPAA = Preset(
    name="hipaa",
    title="HIPAA Security Rule, 45 CFR Part 164 Subpart C",
    clauses=(
        Clause("164.312(b)", "audit controls that record and examine activity in systems "
               "that contain or use ePHI",
               "data_access, authentication, security, configuration_change and system "
               "events are always recorded"),
        Clause("164.312(c)(1)", "protect ePHI from improper alteration or destruction",
               "the audit trail itself is tamper-evident (signed Merkle checkpoints)"),
        Clause("164.308(a)(1)(ii)(D)", "regularly review records of information system "
               "activity",
               "verified search by time window, actor, action and correlation id"),
        Clause("164.316(b)(2)(i)", "retain required documentation for 6 years",
               "retention class hipaa: 6 years (a policy choice: the clause covers "
               "documentation, many programmes apply it to audit logs)"),
    ),
    requires=(
        Requirement("data_access", (), "164.312(b)"),
        Requirement("authentication", (), "164.312(b)"),
        Requirement("security", (), "164.312(b)"),
        Requirement("configuration_change", (), "164.312(b)"),
        Requirement("system", (), "164.312(b)"),
    ),
    required_fields=("user_id", "outcome", "resource"),
    field_categories=("authentication", "data_access", "configuration_change", "security"),
    retention=RetentionClass("hipaa", YEARS_6, MONTHS_3, "HIPAA 164.316(b)(2)(i) (policy)"),
    covers=("data_access", "authentication", "security", "configuration_change", "system"),
    operator_duties=(
        "decide which systems hold ePHI and send their events to the ledger",
        "review activity regularly (164.308(a)(1)(ii)(D)) and document the reviews",
        "confirm the 6-year figure with counsel for audit logs",
    ),
)

SOX = Preset(
    name="sox",
    title="Sarbanes-Oxley (IT general controls evidence)",
    clauses=(
        Clause("SOX 404 (ITGC)", "evidence that changes to and access to financially "
               "relevant systems are controlled",
               "configuration_change, rule_change, authentication, security and system events "
               "and data changes (write, update, create, delete) are always recorded"),
        Clause("18 U.S.C. 1519", "altering or destroying records to obstruct is a crime",
               "alterations of the ledger are detected by verification"),
        Clause("17 CFR 210.2-06", "auditors retain workpapers and related records for 7 years",
               "retention class sox: 7 years (a policy choice: the rule binds auditors, "
               "companies commonly adopt it for financial-system audit trails)"),
    ),
    requires=(
        Requirement("configuration_change", (), "SOX 404 (ITGC)"),
        Requirement("rule_change", (), "SOX 404 (ITGC)"),
        Requirement("authentication", (), "SOX 404 (ITGC)"),
        Requirement("security", (), "SOX 404 (ITGC)"),
        Requirement("system", (), "SOX 404 (ITGC)"),
        Requirement("data_access", ("write", "update", "create", "delete"), "SOX 404 (ITGC)"),
    ),
    required_fields=("user_id", "outcome", "resource"),
    field_categories=("configuration_change", "rule_change", "authentication",
                      "data_access"),
    retention=RetentionClass("sox", YEARS_7, MONTHS_3, "17 CFR 210.2-06 (policy)"),
    covers=("configuration_change", "rule_change", "authentication", "security", "system",
            "data_access"),
    operator_duties=(
        "identify the financially relevant systems and route their events here",
        "have auditors agree on the 7-year class and on what counts as a change",
    ),
)

GDPR = Preset(
    name="gdpr",
    title="GDPR (Regulation (EU) 2016/679)",
    clauses=(
        Clause("Art. 5(1)(e)", "storage limitation: keep personal data no longer than "
               "necessary",
               "retention class standard: 13 months by default (shortest justified period; "
               "change it in audit_filters.yaml)"),
        Clause("Art. 5(1)(f), Art. 32", "integrity and confidentiality of processing",
               "personal fields are encrypted per data subject (AES-256-GCM); the ledger "
               "commits to ciphertext hashes only"),
        Clause("Art. 17", "right to erasure",
               "`monitoring audit erase SUBJECT` destroys the subject's key; every checkpoint "
               "still verifies; the erasure is logged without personal data"),
        Clause("Art. 25", "data protection by design and by default",
               "envelopes never hold the plain user id, origination or details of an event "
               "with a data subject; the actor is a random reference"),
        Clause("Art. 33", "notify personal data breaches",
               "security events are always recorded"),
    ),
    requires=(
        Requirement("security", ("gdpr.*",), "Art. 17"),
        Requirement("security", (), "Art. 33"),
    ),
    required_fields=(),
    field_categories=(),
    retention=RetentionClass(STANDARD_CLASS, MONTHS_13, MONTHS_3, "GDPR Art. 5(1)(e)"),
    covers=ALL_CATEGORIES,
    operator_duties=(
        "document the legal basis and the retention period of each class (Art. 30)",
        "decide whether a retention duty or legal claim (Art. 17(3)(b)/(e)) defers an "
        "erasure; PCI DSS and US law do not by themselves",
        "keep personal data out of action, resource and correlation id",
        "erase copies outside the ledger (Elasticsearch, backups, exports) too",
    ),
)

PRESETS: Mapping[str, Preset] = MappingProxyType(
    {p.name: p for p in (PCI_DSS, HIPAA, SOX, GDPR)})
"""The compliance presets by name, as ``compliance:`` in ``audit_filters.yaml`` lists them."""

META = RetentionClass(META_CLASS, None, 0,
                      "needed to verify the rest: genesis, key rotations, prunes, erasures")
STANDARD = GDPR.retention

BUILTIN_CLASSES: Mapping[str, RetentionClass] = MappingProxyType({
    c.name: c for c in (META, STANDARD, PCI_DSS.retention, HIPAA.retention, SOX.retention)})
"""The retention classes that exist without configuration; ``retention:`` may change them."""


def is_meta_event(category: str, action: str) -> bool:
    """Whether an event is one of the ledger's own records (always kept, class ``meta``)."""
    return category in META_CATEGORIES and action.startswith(META_ACTION_PREFIXES)
