"""Proofs that a time-window search left nothing out, checkable offline (no DuckDB).

The writer keeps ``ts`` non-decreasing in seq order, so the entries of a time window
``[since, until)`` are one contiguous seq range ``[a, b)``. A :class:`WindowProof` carries the
signed checkpoint, the envelopes of ``[a - 1, b + 1)`` (the window plus one boundary entry on
each side whose ``ts`` lies outside it) and a *range proof*: the hashes of the maximal subtrees
of the checkpoint's tree that hold none of those entries. The client recomputes the signed
root from the envelopes and the range proof; if it matches, the envelopes are exactly the
ledger's entries ``a - 1 .. b`` (nothing inserted, removed, reordered or altered), and the
boundary timestamps show that no entry outside that range falls into the window (Crosby and
Wallach's authenticated search, which Rekor v2 dropped for lack of it).

A range proof over indices ``[lo, hi)`` of a tree of ``n`` leaves has at most ``2 log2 n``
hashes; the same construction over any sorted set of indices (:func:`multiproof`) verifies many
scattered search hits against one root at once.

Entries whose payload retention removed keep their leaf hash: the proof carries that hash in
their place (``{"leaf": ...}``), the root still verifies, and the verified window lists them as
``pruned`` (their timestamps are unknown). A boundary is always an entry with its payload. The
proof alone cannot show that a pruned entry was removed legitimately: a client that needs
that checks each pruned seq against the ledger's signed ``retention.prune`` and
``retention.archive`` records (``monitoring audit verify --full`` does so for every entry).

What the client must trust: that the ledger's key signs only trees whose ``ts`` never
decrease (the writer clamps them and ``verify --full`` checks it); the proof cannot show the
timestamps of entries it does not carry.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from monitoring.audit.errors import NoteError, ProofError, SigningKeyError, VerifyFailure
from monitoring.audit.keys import KeyHistory, parse_vkey_window
from monitoring.audit.merkle import (
    HASH_SIZE,
    NodeReader,
    compact_range,
    fetch_nodes,
    leaf_hash,
    node_hash,
    root_from_leaves,
)
from monitoring.audit.note import Checkpoint, NoteVerifier, open_checkpoint
from monitoring.audit.offline import check_envelope

PROOF_FORMAT = "monitoring-audit-window/v1"
"""The ``format`` member of a serialised window proof."""

Span = tuple[int, int]
"""A subtree of the RFC 6962 tree as the half-open leaf range ``[start, end)`` it covers."""


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (n >= 2): where RFC 6962 splits."""
    return 1 << ((n - 1).bit_length() - 1)


# --------------------------------------------------------------------------- multiproofs


def _check_indices(indices: Sequence[int], size: int) -> None:
    if not indices:
        raise ProofError("a range proof needs at least one leaf")
    if indices[0] < 0 or indices[-1] >= size:
        raise ProofError(f"leaf indices {indices[0]}..{indices[-1]} are not all below the tree "
                         f"size {size}")
    if not isinstance(indices, range) and any(b <= a for a, b in itertools.pairwise(indices)):
        raise ProofError("leaf indices must be strictly increasing")


def _count(indices: Sequence[int], start: int, end: int) -> int:
    """How many of the sorted ``indices`` lie in ``[start, end)``."""
    return bisect.bisect_left(indices, end) - bisect.bisect_left(indices, start)


def proof_spans(indices: Sequence[int], size: int) -> list[Span]:
    """The maximal subtrees of the tree of ``size`` leaves that hold none of ``indices``.

    In left-to-right order; ``indices`` are sorted, unique and below ``size``. Their hashes,
    together with the leaves at ``indices``, determine the root.
    """
    _check_indices(indices, size)
    spans: list[Span] = []

    def walk(start: int, end: int) -> None:
        inside = _count(indices, start, end)
        if inside == 0:
            spans.append((start, end))
        elif inside < end - start:
            k = _split(end - start)
            walk(start, start + k)
            walk(start + k, end)

    walk(0, size)
    return spans


def multiproof(reader: NodeReader, indices: Sequence[int], size: int) -> list[bytes]:
    """The hashes of :func:`proof_spans`, read from stored complete subtrees in one fetch.

    Every such span starts at a multiple of the largest power of two not above its length (it
    is a subtree of the RFC 6962 recursion), so its hash is the right-to-left fold of its
    compact range.
    """
    spans = proof_spans(indices, size)
    ranges = [compact_range(start, end) for start, end in spans]
    coords = list(dict.fromkeys(c for r in ranges for c in r))
    hashes = dict(zip(coords, fetch_nodes(reader, coords), strict=True))
    out: list[bytes] = []
    for r in ranges:
        acc = hashes[r[-1]]
        for coord in reversed(r[:-1]):
            acc = node_hash(hashes[coord], acc)
        out.append(acc)
    return out


def range_proof(reader: NodeReader, start: int, end: int, size: int) -> list[bytes]:
    """:func:`multiproof` for the contiguous leaves ``[start, end)``."""
    return multiproof(reader, range(start, end), size)


def root_from_multiproof(indices: Sequence[int], leaves: Sequence[bytes], size: int,
                         proof: Sequence[bytes]) -> bytes:
    """The root that ``leaves`` (the leaf hashes at ``indices``) and ``proof`` lead to.

    Strict, like the RFC 9162 verifiers: the proof must have exactly one 32-byte hash per span
    of :func:`proof_spans`; compare the result with the signed root.
    """
    _check_indices(indices, size)
    if len(leaves) != len(indices):
        raise ProofError(f"{len(leaves)} leaf hashes for {len(indices)} indices")
    want = len(proof_spans(indices, size))
    if isinstance(proof, bytes | str) or len(proof) != want:
        got = "one string" if isinstance(proof, bytes | str) else f"{len(proof)} hashes"
        raise ProofError(f"range proof has {got}, expected {want} hashes")
    for i, h in enumerate(list(proof) + list(leaves)):
        if not isinstance(h, bytes) or len(h) != HASH_SIZE:
            what = f"proof hash {i}" if i < want else f"leaf hash {i - want}"
            raise ProofError(f"{what} is not a {HASH_SIZE}-byte hash")
    position = 0

    def walk(start: int, end: int) -> bytes:
        nonlocal position
        lo = bisect.bisect_left(indices, start)
        inside = bisect.bisect_left(indices, end) - lo
        if inside == 0:
            position += 1
            return proof[position - 1]
        if inside == end - start:
            return root_from_leaves(leaves[lo:lo + inside])
        k = _split(end - start)
        left = walk(start, start + k)
        return node_hash(left, walk(start + k, end))

    return walk(0, size)


# --------------------------------------------------------------------------- window proofs


@dataclass(frozen=True)
class WindowProof:
    """Everything a client needs to check a time-window search offline.

    ``entries`` are the ledger's entries ``start, start + 1, ...``: canonical envelope bytes,
    or a 32-byte leaf hash for an entry whose payload was pruned (kept apart in ``pruned``).
    """

    note: str
    """The signed checkpoint the proof is against."""
    since_us: int | None
    until_us: int | None
    start: int
    envelopes: tuple[bytes, ...]
    """One per entry from ``start`` on; ``b""`` where the payload was pruned."""
    pruned_leaves: Mapping[int, bytes] = field(default_factory=dict)
    """Leaf hashes of pruned entries, by seq."""
    proof: tuple[bytes, ...] = ()

    @property
    def end(self) -> int:
        """One past the last entry carried."""
        return self.start + len(self.envelopes)

    def to_json(self) -> dict[str, Any]:
        """The proof as a JSON object (``format``, hashes and envelopes in base64)."""
        entries: list[Any] = []
        for i, env in enumerate(self.envelopes):
            seq = self.start + i
            if seq in self.pruned_leaves:
                entries.append({"leaf": _b64(self.pruned_leaves[seq])})
            else:
                entries.append(_b64(env))
        return {"format": PROOF_FORMAT, "checkpoint": self.note, "since_us": self.since_us,
                "until_us": self.until_us, "start": self.start, "entries": entries,
                "proof": [_b64(h) for h in self.proof]}

    def dumps(self) -> str:
        """The proof as one JSON text."""
        return json.dumps(self.to_json(), separators=(",", ":")) + "\n"

    @classmethod
    def from_json(cls, obj: Any) -> WindowProof:
        """Parse :meth:`to_json` output strictly; :class:`VerifyFailure` names the member."""
        if not isinstance(obj, dict):
            raise _malformed("", "expected a JSON object")
        if obj.get("format") != PROOF_FORMAT:
            raise _malformed("format", f"expected {PROOF_FORMAT!r}, got {obj.get('format')!r}")
        known = {"format", "checkpoint", "since_us", "until_us", "start", "entries", "proof"}
        extra = sorted(set(obj) - known)
        if extra:
            raise _malformed(extra[0], "unknown member (a window proof has "
                             + ", ".join(sorted(known)) + ")")
        note = obj.get("checkpoint")
        if not isinstance(note, str):
            raise _malformed("checkpoint", "expected the signed checkpoint note as text")
        bounds = [obj.get("since_us"), obj.get("until_us")]
        for name, value in zip(("since_us", "until_us"), bounds, strict=True):
            if value is not None and not _is_int(value):
                raise _malformed(name, "expected an integer (µs since the epoch) or null")
        start = obj.get("start")
        if not isinstance(start, int) or isinstance(start, bool) or start < 0:
            raise _malformed("start", "expected a non-negative integer")
        raw_entries = obj.get("entries")
        if not isinstance(raw_entries, list) or not raw_entries:
            raise _malformed("entries", "expected a non-empty list")
        envelopes: list[bytes] = []
        pruned: dict[int, bytes] = {}
        for i, item in enumerate(raw_entries):
            where = f"entries[{i}]"
            if isinstance(item, dict):
                if set(item) != {"leaf"}:
                    raise _malformed(where, 'expected base64 envelope or {"leaf": base64}')
                pruned[start + i] = _unb64(item["leaf"], where + ".leaf", HASH_SIZE)
                envelopes.append(b"")
            else:
                envelopes.append(_unb64(item, where))
        raw_proof = obj.get("proof")
        if not isinstance(raw_proof, list):
            raise _malformed("proof", "expected a list of base64 hashes")
        proof = tuple(_unb64(h, f"proof[{i}]", HASH_SIZE) for i, h in enumerate(raw_proof))
        return cls(note, bounds[0], bounds[1], start, tuple(envelopes), pruned, proof)

    @classmethod
    def loads(cls, text: str | bytes) -> WindowProof:
        """Parse a serialised proof (:meth:`dumps`)."""
        try:
            obj = json.loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise _malformed("", f"not JSON: {exc}") from None
        return cls.from_json(obj)


@dataclass(frozen=True)
class VerifiedWindow:
    """A window proof that verified: the window's entries, proven complete."""

    checkpoint: Checkpoint
    first: int
    """Seq of the first entry at or after ``since`` (the window is ``[first, end)``)."""
    end: int
    """Seq of the first entry at or after ``until`` (or the checkpoint size)."""
    entries: list[dict[str, Any]]
    """The envelopes of the window's entries, parsed, in seq order (pruned ones left out)."""
    pruned: list[int]
    """Seqs inside the carried range whose payload was pruned (timestamps unknown)."""
    open_end: bool
    """True when the window reaches past the checkpoint: later entries may still fall in it."""
    signed_by: str


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(value: Any, where: str, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise _malformed(where, "expected base64 text")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise _malformed(where, "not valid base64") from None
    if size is not None and len(raw) != size:
        raise _malformed(where, f"expected {size} bytes, got {len(raw)}")
    return raw


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _malformed(member: str, message: str) -> VerifyFailure:
    where = f"window proof: {member}: " if member else "window proof: "
    return VerifyFailure(None, where + message)


def key_history(keys: KeyHistory | NoteVerifier | str | Sequence[str | NoteVerifier]
                ) -> KeyHistory:
    """The keys a client accepts, as a history: vkeys (``VKEY`` or ``VKEY@FROM-TO``) or keys."""
    if isinstance(keys, KeyHistory):
        return keys
    items: Sequence[str | NoteVerifier] = [keys] if isinstance(keys, str | NoteVerifier) \
        else keys
    history = KeyHistory([])
    for item in items:
        if isinstance(item, NoteVerifier):
            history.windows.append(KeyHistory.genesis(item).windows[0])
        else:
            history.windows.append(parse_vkey_window(item))
    if not history.windows:
        raise SigningKeyError("no verifier key given")
    return history


def open_signed_checkpoint(note: str, history: KeyHistory, origin: str | None = None
                           ) -> tuple[Checkpoint, NoteVerifier]:
    """The checkpoint of ``note`` if the log's key signed it within its validity window.

    Raises :class:`VerifyFailure` (bad or unknown signature, wrong origin, key outside its
    window).
    """
    try:
        cp, verified = open_checkpoint(note, history.verifiers, origin)
    except NoteError as exc:
        raise VerifyFailure(None, f"checkpoint: {exc}") from None
    signer = history.check_any([v for v in verified if v.name == cp.origin], cp.size)
    return cp, signer


def _parse_entry(envelope: bytes, seq: int, origin: str) -> dict[str, Any]:
    event = check_envelope(envelope, seq, origin)
    if not _is_int(event.get("ts")):
        raise VerifyFailure(seq, "the envelope has no integer ts")
    return event


def verify_window_proof(proof: WindowProof | str | bytes,
                        keys: KeyHistory | NoteVerifier | str | Sequence[str | NoteVerifier],
                        origin: str | None = None) -> VerifiedWindow:
    """Check a window proof; returns the window's entries or raises :class:`VerifyFailure`.

    Checks, in order: the checkpoint's signature by one of ``keys`` within its window (and
    ``origin`` when pinned); that the carried envelopes (and pruned leaf hashes) plus the range
    proof lead to the signed root; that each envelope names the checkpoint's origin and its
    own seq; that ``ts`` never decreases; and that the range reaches the window's edges: the
    first entry carried is seq 0 or lies before ``since``, the last is the checkpoint's last
    entry or lies at or after ``until``.
    """
    if not isinstance(proof, WindowProof):
        proof = WindowProof.loads(proof)
    history = key_history(keys)
    cp, signer = open_signed_checkpoint(proof.note, history, origin)
    since, until = proof.since_us, proof.until_us
    if since is not None and until is not None and until < since:
        raise VerifyFailure(None, f"window proof: until ({until}) is before since ({since})")
    lo, hi = proof.start, proof.end
    if hi > cp.size:
        raise VerifyFailure(None, f"window proof carries entries up to seq {hi - 1}, beyond the "
                            f"checkpoint's size {cp.size}")
    leaves = [proof.pruned_leaves[lo + i] if lo + i in proof.pruned_leaves else leaf_hash(env)
              for i, env in enumerate(proof.envelopes)]
    try:
        root = root_from_multiproof(range(lo, hi), leaves, cp.size, proof.proof)
    except ProofError as exc:
        raise VerifyFailure(None, f"window proof: {exc}") from None
    if root != cp.root:
        raise VerifyFailure(None, f"window proof: the entries {lo}..{hi - 1} and the range proof "
                            f"do not lead to the signed root of size {cp.size} (an entry was "
                            "left out, added or altered)")
    parsed: dict[int, dict[str, Any]] = {}
    last_ts: int | None = None
    for i, env in enumerate(proof.envelopes):
        seq = lo + i
        if seq in proof.pruned_leaves:
            continue
        event = _parse_entry(env, seq, cp.origin)
        if last_ts is not None and event["ts"] < last_ts:
            raise VerifyFailure(seq, f"ts {event['ts']} is before the previous entry's "
                                f"{last_ts}: the window cannot be proven complete")
        last_ts = event["ts"]
        parsed[seq] = event
    _check_edges(proof, cp, parsed)
    ordered = sorted(parsed.items())
    first = next((s for s, e in ordered if since is None or e["ts"] >= since), hi)
    end = next((s for s, e in ordered if until is not None and e["ts"] >= until), hi)
    inside = [e for s, e in ordered if first <= s < end]
    last = parsed.get(hi - 1)
    open_end = hi == cp.size and (until is None or last is None or last["ts"] < until)
    return VerifiedWindow(cp, first, end, inside, sorted(proof.pruned_leaves), open_end,
                          signer.key_hex)


def _check_edges(proof: WindowProof, cp: Checkpoint,
                 parsed: Mapping[int, dict[str, Any]]) -> None:
    lo, hi = proof.start, proof.end
    since, until = proof.since_us, proof.until_us
    if lo > 0:
        if since is None:
            raise VerifyFailure(lo, "window proof starts after seq 0 but the window has no "
                                "lower bound: earlier entries may be missing")
        first = parsed.get(lo)
        if first is None:
            raise VerifyFailure(lo, "window proof: the first entry carried is pruned, so it "
                                "cannot show where the window starts")
        if first["ts"] >= since:
            raise VerifyFailure(lo, f"window proof: the first entry carried (ts {first['ts']}) "
                                f"is inside the window, so entries before seq {lo} may have "
                                "been left out")
    if hi < cp.size:
        if until is None:
            raise VerifyFailure(hi, f"window proof ends at seq {hi - 1} but the window has no "
                                f"upper bound and the checkpoint has {cp.size} entries")
        last = parsed.get(hi - 1)
        if last is None:
            raise VerifyFailure(hi - 1, "window proof: the last entry carried is pruned, so it "
                                "cannot show where the window ends")
        if last["ts"] < until:
            raise VerifyFailure(hi - 1, f"window proof: the last entry carried (ts "
                                f"{last['ts']}) is inside the window, so entries after seq "
                                f"{hi - 1} may have been left out")


__all__ = [
    "PROOF_FORMAT",
    "VerifiedWindow",
    "WindowProof",
    "key_history",
    "multiproof",
    "open_signed_checkpoint",
    "proof_spans",
    "range_proof",
    "root_from_multiproof",
    "verify_window_proof",
]
