"""GDPR erasure by crypto-shredding: destroy a data subject's key, keep every proof valid.

Leaves commit to envelopes that hold only a pseudonymous subject ref and the SHA-256 of the
ciphertext of the personal fields (docs/audit.md), never to the personal data itself nor to a
plain hash of it. Erasing a subject therefore changes no leaf: :func:`erase` deletes the
subject's sealed rows (``audit_pii``), runs DuckDB's CHECKPOINT so they leave the WAL, destroys
the subject's data key in the vault (overwritten, unlinked, folder fsynced: cryptographic
erase in the sense of NIST SP 800-88), and records a ``security``/``gdpr.erasure`` event that
names the subject *ref* only. Every checkpoint still verifies; the personal data cannot be
decrypted by anyone any more, including from older copies of the ciphertext.

GDPR Art. 17(3)(b)/(e) lets a legal retention duty or a legal-claims hold override erasure:
when any of the subject's events belongs to a retention class with ``hold: true``, erasure is
refused with a clear message unless forced (the refusal is the operator's cue to restrict
processing, Art. 18, and schedule the erasure for the end of the hold).

What this cannot reach: copies outside the ledger (backups of the vault folder or of the key
encryption key, Elasticsearch documents if personal data was shipped, process memory dumps).
Deleted rows are not overwritten by DuckDB: the ciphertext can stay in free blocks of the
store file until they are reused (measured here), and archived entries keep theirs in the
Parquet files. Both are unreadable once the key is destroyed, which is what crypto-shredding
relies on; the plaintext never reaches the store or the archives at all.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitoring.audit.errors import AuditError
from monitoring.audit.retention import (
    append_record,
    class_hold,
    parse_verified,
    query,
    run_maintenance,
)

if TYPE_CHECKING:
    import duckdb

    from monitoring.audit.ledger import Appended, Ledger

ERASURE_CATEGORY = "security"
ERASURE_ACTION = "gdpr.erasure"


class ErasureHeldError(AuditError):
    """The subject's events are under a legal hold; erasure needs ``force``."""


def erase(ledger: Ledger, subject: str, reason: str, *, force: bool = False) -> Appended:
    """Crypto-shred ``subject`` and record it; returns the ``gdpr.erasure`` event.

    ``subject`` is the plain user id (or subject) events were recorded with; it never appears
    in the ledger, in messages or in the erasure record. Raises :class:`ErasureHeldError`
    under a legal hold (unless ``force``), :class:`AuditError` when the vault holds no key for
    the subject (never recorded, or already erased).
    """
    if not subject:
        raise AuditError("erase: the subject is empty")
    reason = reason.strip()
    if not reason:
        raise AuditError("erase: --reason is required (why this subject is erased)")
    ledger.flush()
    vault = ledger.vault
    ref = vault.ref_for(subject, create=False)
    if ref is None:
        raise AuditError("erase: the vault holds no key for this subject (no personal data "
                         "was recorded for it, or it was erased already)")
    held = held_classes(ledger, ref)
    if held and not force:
        raise ErasureHeldError(
            f"erase: {ref} has events in retention classes under legal hold "
            f"({', '.join(held)}); nothing was erased. Restrict processing instead (GDPR "
            "Art. 17(3), Art. 18) or override with --force")
    rows = run_maintenance(ledger, lambda cur: _delete_sealed(cur, ref))
    erased = vault.erase(subject)
    details = {"subject_ref": ref, "reason": reason, "sealed_rows_deleted": rows,
               "key_destroyed": erased is not None, "forced": bool(force and held),
               "held_classes": held}
    return append_record(ledger, ERASURE_CATEGORY, ERASURE_ACTION, "audit/subject-keys",
                         details)


def _delete_sealed(cur: duckdb.DuckDBPyConnection, ref: str) -> int:
    row = cur.execute("SELECT count(*) FROM audit_pii WHERE ref = ?", [ref]).fetchone()
    cur.execute("DELETE FROM audit_pii WHERE ref = ?", [ref])
    return int(row[0]) if row else 0


def held_classes(ledger: Ledger, ref: str) -> list[str]:
    """Retention classes under legal hold that hold events of the subject ``ref``.

    Hot entries are read from their verified envelope (the search column where the payload
    was pruned); archived ones from the archive files of held classes (their sealed data
    moved there with them).
    """
    from monitoring.audit.archive import archive_files, archived_refs

    held = {name for name, rc in ledger.policy.retention_classes.items() if class_hold(rc)}
    if not held:
        return []
    rows = query(ledger.storage, "SELECT e.seq, e.retention, e.envelope, e.leaf FROM audit_pii "
                 "p JOIN audit_entries e ON e.seq = p.seq WHERE p.ref = ? ORDER BY e.seq", [ref])
    found: set[str] = set()
    for seq, column, envelope, leaf in rows:
        name = column
        if envelope is not None:
            name = parse_verified(seq, envelope, leaf, ledger.storage.origin).get("retention")
        if name in held:
            found.add(str(name))
    for f in archive_files(ledger):
        if f.retention in held and f.retention not in found and f.path.exists() \
                and ref in archived_refs(f.path):
            found.add(f.retention)
    return sorted(found)
