"""The tamper-evident audit ledger.

Events become canonical, PII-free envelopes (RFC 8785 JSON) that are leaves of an RFC 6962
Merkle tree stored in the same DuckDB file as the metrics; every committed batch gets a C2SP
checkpoint signed with Ed25519, appended to a sidecar file and to external anchors. See
``docs/audit.md`` for the threat model and what is (and is not) guaranteed.
"""

from __future__ import annotations
