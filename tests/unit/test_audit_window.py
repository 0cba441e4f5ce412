"""Range proofs and time-window completeness proofs, in memory (no DuckDB)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitoring.audit.envelope import AuditEvent, build_envelope
from monitoring.audit.errors import ProofError, VerifyFailure
from monitoring.audit.keys import KeyHistory, SigningKey
from monitoring.audit.merkle import MemoryTree, inclusion_proof, leaf_hash
from monitoring.audit.note import Checkpoint, sign_checkpoint
from monitoring.audit.window import (
    WindowProof,
    multiproof,
    proof_spans,
    range_proof,
    root_from_multiproof,
    verify_window_proof,
)

ORIGIN = "example.test/audit/window"
T0 = 1_700_000_000_000_000


def _leaves(n: int) -> list[bytes]:
    return [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]


@st.composite
def trees_and_indices(draw: st.DrawFn) -> tuple[int, list[int]]:
    size = draw(st.integers(1, 300))
    indices = draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=40, unique=True))
    return size, sorted(indices)


@settings(max_examples=300, deadline=None)
@given(trees_and_indices())
def test_multiproof_leads_to_the_root(case: tuple[int, list[int]]) -> None:
    size, indices = case
    leaves = _leaves(size)
    tree = MemoryTree(leaves)
    proof = multiproof(tree, indices, size)
    assert root_from_multiproof(indices, [leaves[i] for i in indices], size, proof) == tree.root()
    # at most one hash per level for each index (an inclusion proof each), usually far fewer
    assert len(proof) <= len(indices) * max(1, math.ceil(math.log2(size)))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n - 1))))
def test_single_index_multiproof_is_the_inclusion_proof(case: tuple[int, int]) -> None:
    size, index = case
    tree = MemoryTree(_leaves(size))
    assert sorted(multiproof(tree, [index], size)) == sorted(inclusion_proof(tree, index, size))


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 500).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(0, n - 1)).flatmap(
        lambda t: st.tuples(st.just(t[0]), st.just(t[1]), st.integers(t[1] + 1, t[0])))))
def test_contiguous_range_proof_is_logarithmic(case: tuple[int, int, int]) -> None:
    size, lo, hi = case
    leaves = _leaves(size)
    tree = MemoryTree(leaves)
    proof = range_proof(tree, lo, hi, size)
    assert len(proof) <= 2 * max(1, math.ceil(math.log2(size)))
    assert root_from_multiproof(range(lo, hi), leaves[lo:hi], size, proof) == tree.root()


def test_every_tampered_proof_hash_or_leaf_changes_the_root() -> None:
    size = 37
    leaves = _leaves(size)
    tree = MemoryTree(leaves)
    indices = [3, 4, 17, 30]
    proof = multiproof(tree, indices, size)
    picked = [leaves[i] for i in indices]
    for i in range(len(proof)):
        bad = list(proof)
        bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
        assert root_from_multiproof(indices, picked, size, bad) != tree.root()
    for i in range(len(picked)):
        bad = list(picked)
        bad[i] = leaf_hash(b"forged")
        assert root_from_multiproof(indices, bad, size, proof) != tree.root()
    # the same leaves claimed at shifted positions
    assert root_from_multiproof([i + 1 for i in indices], picked, size,
                                multiproof(tree, [i + 1 for i in indices], size)) != tree.root()


@pytest.mark.parametrize(("indices", "proof_change", "message"), [
    ([2, 1], None, "strictly increasing"),
    ([5, 5], None, "strictly increasing"),
    ([40], None, "not all below the tree size"),
    ([], None, "at least one leaf"),
    ([3], "drop", "expected"),
    ([3], "extra", "expected"),
    ([3], "short", "32-byte hash"),
])
def test_malformed_multiproofs_are_rejected(indices: list[int], proof_change: str | None,
                                            message: str) -> None:
    size = 20
    tree = MemoryTree(_leaves(size))
    proof = multiproof(tree, [3], size) if proof_change else []
    if proof_change == "drop":
        proof = proof[:-1]
    elif proof_change == "extra":
        proof = [*proof, proof[0]]
    elif proof_change == "short":
        proof = [proof[0][:31], *proof[1:]]
    with pytest.raises(ProofError, match=message):
        root_from_multiproof(indices, [leaf_hash(b"x")] * len(indices), size, proof)
    if not proof_change:
        with pytest.raises(ProofError, match=message):
            proof_spans(indices, size)


# --------------------------------------------------------------------------- window proofs


class MiniLog:
    """A signed log in memory: envelopes with given timestamps, a tree, signed checkpoints."""

    def __init__(self, ts: list[int], key: SigningKey | None = None,
                 origin: str = ORIGIN) -> None:
        self.key = key or SigningKey.generate(origin)
        self.origin = origin
        self.envelopes = [
            build_envelope(AuditEvent("system", f"step.{i}"), origin=origin, seq=i,
                           ts_us=t, actor=None, retention="standard", pii=None)
            for i, t in enumerate(ts)]
        self.tree = MemoryTree([leaf_hash(e) for e in self.envelopes])
        self.note = sign_checkpoint(Checkpoint(origin, self.tree.size, self.tree.root()),
                                    self.key.signer())

    def proof(self, lo: int, hi: int, since: int | None, until: int | None,
              pruned: frozenset[int] = frozenset()) -> WindowProof:
        envs = tuple(b"" if s in pruned else self.envelopes[s] for s in range(lo, hi))
        leaves = {s: self.tree.node(0, s) for s in pruned}
        return WindowProof(self.note, since, until, lo, envs, leaves,
                           tuple(range_proof(self.tree, lo, hi, self.tree.size)))


def _ts(n: int) -> list[int]:
    return [T0 + 1_000_000 * i for i in range(n)]  # one entry per second


def test_window_in_the_middle_verifies_and_lists_exactly_its_entries() -> None:
    log = MiniLog(_ts(40))
    since, until = T0 + 10_000_000, T0 + 20_000_000  # seqs 10..19
    found = verify_window_proof(log.proof(9, 21, since, until), log.key.vkey())
    assert (found.first, found.end) == (10, 20)
    assert [e["seq"] for e in found.entries] == list(range(10, 20))
    assert not found.open_end and not found.pruned
    assert found.checkpoint.size == 40


def test_window_json_round_trip_and_offline_parse() -> None:
    log = MiniLog(_ts(12))
    text = log.proof(3, 8, T0 + 4_000_000, T0 + 7_000_000).dumps()
    assert json.loads(text)["format"] == "monitoring-audit-window/v1"
    found = verify_window_proof(text, [log.key.vkey()], ORIGIN)
    assert [e["seq"] for e in found.entries] == [4, 5, 6]


def test_open_windows_need_the_whole_ledger_on_their_open_side() -> None:
    log = MiniLog(_ts(10))
    assert verify_window_proof(log.proof(0, 4, None, T0 + 3_000_000), log.key.vkey()).first == 0
    tail = verify_window_proof(log.proof(5, 10, T0 + 6_000_000, None), log.key.vkey())
    assert tail.open_end and [e["seq"] for e in tail.entries] == [6, 7, 8, 9]
    with pytest.raises(VerifyFailure, match="no lower bound"):
        verify_window_proof(log.proof(2, 10, None, None), log.key.vkey())
    with pytest.raises(VerifyFailure, match="no upper bound"):
        verify_window_proof(log.proof(0, 9, None, None), log.key.vkey())


def test_an_empty_window_is_proven_by_its_two_neighbours() -> None:
    ts = _ts(10)
    ts[5:] = [t + 60_000_000 for t in ts[5:]]  # a one-minute gap after seq 4
    log = MiniLog(ts)
    found = verify_window_proof(log.proof(4, 6, T0 + 10_000_000, T0 + 50_000_000),
                                log.key.vkey())
    assert found.entries == [] and (found.first, found.end) == (5, 5)


def test_omitting_an_entry_inside_the_window_fails() -> None:
    """A server that drops an entry and shifts the rest: the root no longer matches (T32)."""
    log = MiniLog(_ts(30))
    proof = log.proof(9, 21, T0 + 10_000_000, T0 + 20_000_000)
    dropped = replace(proof, envelopes=proof.envelopes[:5] + proof.envelopes[6:],
                      proof=tuple(range_proof(log.tree, 9, 20, log.tree.size)))
    with pytest.raises(VerifyFailure, match="do not lead to the signed root"):
        verify_window_proof(dropped, log.key.vkey())
    same_shape = replace(proof, envelopes=proof.envelopes[:5] + proof.envelopes[6:]
                         + (log.envelopes[21],))
    with pytest.raises(VerifyFailure, match="do not lead to the signed root"):
        verify_window_proof(same_shape, log.key.vkey())


def test_cutting_a_window_short_fails_at_the_boundary() -> None:
    log = MiniLog(_ts(30))
    since, until = T0 + 10_000_000, T0 + 20_000_000
    with pytest.raises(VerifyFailure, match="inside the window, so entries before seq 12"):
        verify_window_proof(log.proof(12, 21, since, until), log.key.vkey())
    with pytest.raises(VerifyFailure, match="inside the window, so entries after seq 17"):
        verify_window_proof(log.proof(9, 18, since, until), log.key.vkey())


def test_an_altered_envelope_fails() -> None:
    log = MiniLog(_ts(16))
    proof = log.proof(4, 10, T0 + 5_000_000, T0 + 9_000_000)
    envs = list(proof.envelopes)
    envs[2] = envs[2].replace(b"step.6", b"step.X")
    with pytest.raises(VerifyFailure, match="do not lead to the signed root"):
        verify_window_proof(replace(proof, envelopes=tuple(envs)), log.key.vkey())


def test_wrong_key_other_origin_and_key_window_are_rejected() -> None:
    log = MiniLog(_ts(8))
    proof = log.proof(0, 8, None, None)
    with pytest.raises(VerifyFailure, match="no valid signature from a known key"):
        verify_window_proof(proof, SigningKey.generate(ORIGIN).vkey())
    with pytest.raises(VerifyFailure, match=r"expected 'other\.test/log'"):
        verify_window_proof(proof, log.key.vkey(), "other.test/log")
    with pytest.raises(VerifyFailure, match="outside its validity window"):
        verify_window_proof(proof, f"{log.key.vkey()}@1-5")
    assert verify_window_proof(proof, KeyHistory.genesis(log.key.verifier())).end == 8


def test_envelopes_of_another_log_are_rejected_even_when_signed() -> None:
    """The key signs a tree of entries naming another origin: the proof says so (T12)."""
    key = SigningKey.generate(ORIGIN)
    alien = MiniLog(_ts(6), origin="other.test/log")
    tree = alien.tree
    note = sign_checkpoint(Checkpoint(ORIGIN, tree.size, tree.root()), key.signer())
    proof = replace(alien.proof(0, 6, None, None), note=note)
    with pytest.raises(VerifyFailure, match=r"names origin 'other\.test/log'"):
        verify_window_proof(proof, key.vkey())


def test_decreasing_timestamps_cannot_be_proven_complete() -> None:
    ts = _ts(10)
    ts[6] = ts[2]
    log = MiniLog(ts)
    with pytest.raises(VerifyFailure, match="before the previous entry's"):
        verify_window_proof(log.proof(0, 10, None, None), log.key.vkey())


def test_pruned_entries_travel_as_leaf_hashes() -> None:
    log = MiniLog(_ts(20))
    proof = log.proof(4, 12, T0 + 5_000_000, T0 + 11_000_000, pruned=frozenset({6, 7}))
    found = verify_window_proof(WindowProof.loads(proof.dumps()), log.key.vkey())
    assert found.pruned == [6, 7]
    assert [e["seq"] for e in found.entries] == [5, 8, 9, 10]
    edge = log.proof(4, 12, T0 + 5_000_000, T0 + 11_000_000, pruned=frozenset({4}))
    with pytest.raises(VerifyFailure, match="first entry carried is pruned"):
        verify_window_proof(edge, log.key.vkey())
    wrong = log.proof(4, 12, T0 + 5_000_000, T0 + 11_000_000, pruned=frozenset({6}))
    forged = replace(wrong, pruned_leaves={6: leaf_hash(b"not it")})
    with pytest.raises(VerifyFailure, match="do not lead to the signed root"):
        verify_window_proof(forged, log.key.vkey())


@pytest.mark.parametrize(("change", "message"), [
    ({"format": "other/v1"}, "format: expected"),
    ({"extra": 1}, "extra: unknown member"),
    ({"start": -1}, "start: expected a non-negative integer"),
    ({"since_us": "yesterday"}, "since_us: expected an integer"),
    ({"entries": []}, "entries: expected a non-empty list"),
    ({"entries": ["%%%"]}, r"entries\[0\]: not valid base64"),
    ({"entries": [{"leaf": "AAAA"}]}, r"entries\[0\].leaf: expected 32 bytes"),
    ({"proof": ["AAAA"]}, r"proof\[0\]: expected 32 bytes"),
    ({"checkpoint": 5}, "checkpoint: expected the signed checkpoint note"),
])
def test_malformed_proof_files_name_the_member(change: dict[str, object], message: str) -> None:
    log = MiniLog(_ts(4))
    doc = log.proof(0, 4, None, None).to_json()
    doc.update(change)
    with pytest.raises(VerifyFailure, match=message):
        verify_window_proof(json.dumps(doc), log.key.vkey())


def test_not_json_is_a_clear_failure() -> None:
    with pytest.raises(VerifyFailure, match="window proof: not JSON"):
        verify_window_proof("{nope", SigningKey.generate(ORIGIN).vkey())


def test_window_module_does_not_import_duckdb() -> None:
    import subprocess
    import sys

    code = ("import sys; import monitoring.audit.window; "
            "sys.exit(1 if 'duckdb' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
