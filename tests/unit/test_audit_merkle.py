"""The ledger's Merkle tree (monitoring.audit.merkle): RFC 6962 known answers, proofs, verifiers.

Tamper cases: T28 (published reference values), T29 (the transparency-dev/merkle mutation
families, generated here from our own honest proofs for every size 1..64 and every index / size
pair), T30 (consistency proofs with tampered middle hashes), T44 (Hypothesis: all honest proofs
verify; Frontier == MemoryTree == root_at over a store of complete subtrees only).

The expected outcome of every mutated statement comes from an oracle independent of the code
under test: a textbook RFC 6962 implementation over the leaf list (``Ref`` below). A mutated
statement is valid only if it equals an honest statement; where a mutation yields one (for
example a changed root2 when size1 is 0), the test names that case and says why.

This module must not import duckdb: merkle.py is used by the offline verifier.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitoring.audit.errors import AuditError, ProofError
from monitoring.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    MemoryTree,
    compact_range,
    consistency_proof,
    consistency_proof_length,
    inclusion_proof,
    inclusion_proof_length,
    leaf_hash,
    leaf_hashes,
    node_hash,
    range_root,
    root_at,
    root_from_leaves,
    verify_consistency,
    verify_inclusion,
)
from tests.support.merkle_trees import huge_proofs

# --- T28: published RFC 6962 reference values ---------------------------------------------------
# The leaf inputs and roots of the reference tree used by Certificate Transparency and
# transparency-dev/merkle (testonly/constants.go): a few published hash values, used as constants.

REFERENCE_LEAF_INPUTS = [
    bytes.fromhex(h)
    for h in (
        "", "00", "10", "2021", "3031", "40414243", "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
REFERENCE_ROOTS = [
    bytes.fromhex(h)
    for h in (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]
# Leaf hashes (level 0) and the complete subtrees at levels 1 and 2 of the reference tree.
REFERENCE_NODES = {
    (0, 0): "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    (0, 1): "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    (0, 7): "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    (1, 0): "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    (1, 3): "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    (2, 1): "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    (3, 0): "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}


class SubtreeStore:
    """A NodeReader that knows only what the ledger's tables know: leaf hashes and the complete
    subtrees (level >= 1) that ``Frontier.append`` reported. Counts the nodes it was asked for."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.frontier = Frontier()
        self.hashes: dict[tuple[int, int], bytes] = {}
        self.reads = 0
        for i, leaf in enumerate(leaves):
            self.hashes[(0, i)] = leaf
            for level, index, h in self.frontier.append(leaf):
                assert (level, index) not in self.hashes
                self.hashes[(level, index)] = h

    def node(self, level: int, index: int) -> bytes:
        self.reads += 1
        try:
            return self.hashes[(level, index)]
        except KeyError:
            raise ProofError(f"store has no subtree ({level}, {index})") from None


class BulkStore(SubtreeStore):
    """The same store with the optional bulk ``nodes`` call (one query per proof in DuckDB)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        super().__init__(leaves)
        self.bulk_calls = 0

    def nodes(self, coords: Sequence[tuple[int, int]]) -> list[bytes]:
        self.bulk_calls += 1
        return [self.node(level, index) for level, index in coords]


class Ref:
    """Textbook RFC 6962 §2.1 (MTH, PATH, PROOF/SUBPROOF) over a leaf-hash list: the oracle."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        self.leaves = list(leaves)
        self.mth = lru_cache(maxsize=None)(self._mth)

    @staticmethod
    def split(n: int) -> int:
        k = 1
        while k * 2 < n:
            k *= 2
        return k

    def _mth(self, start: int, end: int) -> bytes:
        n = end - start
        if n == 0:
            return hashlib.sha256(b"").digest()
        if n == 1:
            return self.leaves[start]
        k = self.split(n)
        return node_hash(self.mth(start, start + k), self.mth(start + k, end))

    def path(self, m: int, start: int, end: int) -> list[bytes]:
        n = end - start
        if n <= 1:
            return []
        k = self.split(n)
        if m < k:
            return [*self.path(m, start, start + k), self.mth(start + k, end)]
        return [*self.path(m - k, start + k, end), self.mth(start, start + k)]

    def subproof(self, m: int, start: int, end: int, complete: bool) -> list[bytes]:
        n = end - start
        if m == n:
            return [] if complete else [self.mth(start, end)]
        k = self.split(n)
        if m <= k:
            return [*self.subproof(m, start, start + k, complete), self.mth(start + k, end)]
        return [*self.subproof(m - k, start + k, end, False), self.mth(start, start + k)]

    def root(self, size: int) -> bytes:
        return self.mth(0, size)

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return self.path(index, 0, size)

    def consistency(self, size1: int, size2: int) -> list[bytes]:
        return [] if size1 in (0, size2) else self.subproof(size1, 0, size2, True)


def synthetic_leaves(n: int, salt: bytes = b"") -> list[bytes]:
    return leaf_hashes(salt + i.to_bytes(4, "big") for i in range(n))


MAX_SIZE = 64
ORACLE_SIZE = 2 * MAX_SIZE  # mutations double sizes; the oracle knows the tree that far
LEAVES = synthetic_leaves(ORACLE_SIZE)
REF = Ref(LEAVES)
STORE = SubtreeStore(LEAVES)
RANDOM_HASH = hashlib.sha256(b"random").digest()
SHORT = b"WrongLeaf"  # 9 bytes, like the upstream vectors' "wrong leaf" / "wrong root"


# --- T28 ---------------------------------------------------------------------------------------


def test_t28_empty_root_is_sha256_of_nothing() -> None:
    assert REFERENCE_ROOTS[0] == EMPTY_ROOT
    assert MemoryTree([]).root() == EMPTY_ROOT
    assert Frontier().root() == EMPTY_ROOT
    assert root_from_leaves([]) == EMPTY_ROOT


def test_t28_reference_tree_roots_for_sizes_0_to_8() -> None:
    leaves = leaf_hashes(REFERENCE_LEAF_INPUTS)
    assert leaves == [leaf_hash(d) for d in REFERENCE_LEAF_INPUTS]
    tree = MemoryTree(leaves)
    store = SubtreeStore(leaves)
    frontier = Frontier()
    for size, want in enumerate(REFERENCE_ROOTS):
        if size:
            frontier.append(leaves[size - 1])
        assert root_at(tree, size) == want, size
        assert root_at(store, size) == want, size
        assert root_from_leaves(leaves[:size]) == want, size
        assert frontier.root() == want, size
        assert Ref(leaves).root(size) == want, size
    for (level, index), want_hex in REFERENCE_NODES.items():
        assert tree.node(level, index).hex() == want_hex
        assert store.node(level, index).hex() == want_hex


def test_t28_leaf_and_node_hashes_are_domain_separated() -> None:
    a, b = b"a" * 32, b"b" * 32
    assert leaf_hash(a + b) == hashlib.sha256(b"\x00" + a + b).digest()
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert leaf_hash(a + b) != node_hash(a, b)  # a leaf cannot pose as an interior node


def test_t28_proofs_match_the_textbook_rfc6962_algorithm_for_every_size_to_64() -> None:
    for size in range(1, MAX_SIZE + 1):
        for index in range(size):
            proof = inclusion_proof(STORE, index, size)
            assert proof == REF.inclusion(index, size), (index, size)
            assert len(proof) == inclusion_proof_length(index, size)
        for size1 in range(1, size):
            proof = consistency_proof(STORE, size1, size)
            assert proof == REF.consistency(size1, size), (size1, size)
            assert len(proof) == consistency_proof_length(size1, size)
        assert consistency_proof(STORE, size, size) == []
        assert consistency_proof(STORE, 0, size) == []


def test_t28_reference_tree_proofs_verify() -> None:
    """Honest proofs of the published reference tree verify against its published roots."""
    leaves = leaf_hashes(REFERENCE_LEAF_INPUTS)
    tree = MemoryTree(leaves)
    for size in range(1, 9):
        for index in range(size):
            proof = inclusion_proof(tree, index, size)
            verify_inclusion(leaves[index], index, size, proof, REFERENCE_ROOTS[size])
        for size1 in range(1, size + 1):
            proof = consistency_proof(tree, size1, size)
            verify_consistency(size1, size, REFERENCE_ROOTS[size1], REFERENCE_ROOTS[size], proof)


# --- T29: generated mutation families ----------------------------------------------------------


@dataclass(frozen=True)
class Incl:
    leaf: object
    index: object
    size: object
    proof: tuple[object, ...]
    root: object


@dataclass(frozen=True)
class Cons:
    size1: object
    size2: object
    root1: object
    root2: object
    proof: tuple[object, ...]


def flip(h: bytes, bit: int) -> bytes:
    out = bytearray(h)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


FLIP_BITS = (0, 3, 4, 130, 255)  # upstream flips bit 3 (inclusion) and bit 4 (consistency)


def proof_mutations(proof: tuple[bytes, ...]) -> Iterator[tuple[str, tuple[object, ...]]]:
    for i, h in enumerate(proof):
        for bit in FLIP_BITS:
            yield f"modified-proof[{i}]-bit-{bit}", (*proof[:i], flip(h, bit), *proof[i + 1:])
    yield "preceding-garbage", (b"", *proof)
    yield "trailing-garbage", (*proof, b"")
    yield "preceding-garbage-32", (RANDOM_HASH, *proof)
    yield "trailing-garbage-32", (*proof, RANDOM_HASH)
    for i in range(len(proof) + 1):
        yield f"inserted-component[{i}]", (*proof[:i], RANDOM_HASH, *proof[i:])
    for i in range(len(proof)):
        yield f"removed-component[{i}]", (*proof[:i], *proof[i + 1:])
    if proof:
        yield "truncated-proof", proof[:-1]
        yield "preceding-proof[0]", (proof[0], *proof)
    yield "empty-proof", ()


def inclusion_mutations(s: Incl) -> Iterator[tuple[str, Incl]]:
    assert isinstance(s.index, int) and isinstance(s.size, int) and isinstance(s.root, bytes)
    i, n = s.index, s.size
    yield "leafIdx-+-1", Incl(s.leaf, i + 1, n, s.proof, s.root)
    yield "leafIdx---1", Incl(s.leaf, i - 1 if i else 2**64 - 1, n, s.proof, s.root)
    yield "leafIdx-negative", Incl(s.leaf, i - 1, n, s.proof, s.root)
    yield "leafIdx-^-2", Incl(s.leaf, i ^ 2, n, s.proof, s.root)
    yield "treeSize-*-2", Incl(s.leaf, i, n * 2, s.proof, s.root)
    yield "treeSize-div-2", Incl(s.leaf, i, n // 2, s.proof, s.root)
    yield "treeSize-+-1", Incl(s.leaf, i, n + 1, s.proof, s.root)
    yield "wrong-leaf", Incl(SHORT, i, n, s.proof, s.root)
    yield "wrong-leaf-32", Incl(LEAVES[i + 1], i, n, s.proof, s.root)
    yield "empty-root", Incl(s.leaf, i, n, s.proof, EMPTY_ROOT)
    yield "random-root", Incl(s.leaf, i, n, s.proof, RANDOM_HASH)
    yield "preceding-root", Incl(s.leaf, i, n, (s.root, *s.proof), s.root)
    yield "trailing-root", Incl(s.leaf, i, n, (*s.proof, s.root), s.root)
    yield "root-of-other-size", Incl(s.leaf, i, n, s.proof, REF.root(n + 1))
    for name, proof in proof_mutations(s.proof):  # type: ignore[arg-type]
        yield name, Incl(s.leaf, i, n, proof, s.root)


def consistency_mutations(s: Cons) -> Iterator[tuple[str, Cons]]:
    assert isinstance(s.size1, int) and isinstance(s.size2, int)
    m, n = s.size1, s.size2
    yield "swapped-roots", Cons(m, n, s.root2, s.root1, s.proof)
    yield "wrong-root1", Cons(m, n, SHORT, s.root2, s.proof)
    yield "wrong-root2", Cons(m, n, s.root1, SHORT, s.proof)
    yield "random-root1", Cons(m, n, RANDOM_HASH, s.root2, s.proof)
    yield "random-root2", Cons(m, n, s.root1, RANDOM_HASH, s.proof)
    yield "size1-+-1", Cons(m + 1, n, s.root1, s.root2, s.proof)
    yield "size1---1", Cons(m - 1, n, s.root1, s.root2, s.proof)
    yield "size1-^-2", Cons(m ^ 2, n, s.root1, s.root2, s.proof)
    yield "size2-*-2", Cons(m, n * 2, s.root1, s.root2, s.proof)
    yield "size2-div-2", Cons(m, n // 2, s.root1, s.root2, s.proof)
    yield "size2-^-2", Cons(m, n ^ 2, s.root1, s.root2, s.proof)
    yield "preceding-root1", Cons(m, n, s.root1, s.root2, (s.root1, *s.proof))
    yield "preceding-root2", Cons(m, n, s.root1, s.root2, (s.root2, *s.proof))
    yield "trailing-root1", Cons(m, n, s.root1, s.root2, (*s.proof, s.root1))
    yield "trailing-root2", Cons(m, n, s.root1, s.root2, (*s.proof, s.root2))
    for name, proof in proof_mutations(s.proof):  # type: ignore[arg-type]
        yield name, Cons(m, n, s.root1, s.root2, proof)


def is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == 32


def textbook_path_root(m: int, n: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that PATH(m, D[n]) (RFC 6962 §2.1.1) commits to: the proof is the list of
    sibling subtree hashes, deepest first, so the last one is the top-level sibling."""
    if n == 1:
        assert not proof
        return leaf
    k = Ref.split(n)
    if m < k:
        return node_hash(textbook_path_root(m, k, leaf, proof[:-1]), proof[-1])
    return node_hash(proof[-1], textbook_path_root(m - k, n - k, leaf, proof[:-1]))


def textbook_path_len(m: int, n: int) -> int:
    if n == 1:
        return 0
    k = Ref.split(n)
    return 1 + (textbook_path_len(m, k) if m < k else textbook_path_len(m - k, n - k))


def textbook_consistency_roots(
    m: int, n: int, complete: bool, proof: Sequence[bytes], root1: bytes
) -> tuple[bytes, bytes]:
    """(hash of the old tree's part, hash of the new subtree) that SUBPROOF(m, D[n], complete)
    (RFC 6962 §2.1.2) commits to; a complete old subtree is known to the verifier as root1."""
    if m == n:
        if complete:
            assert not proof
            return root1, root1
        assert len(proof) == 1
        return proof[0], proof[0]
    k = Ref.split(n)
    if m <= k:
        old, new = textbook_consistency_roots(m, k, complete, proof[:-1], root1)
        return old, node_hash(new, proof[-1])
    old, new = textbook_consistency_roots(m - k, n - k, False, proof[:-1], root1)
    return node_hash(proof[-1], old), node_hash(proof[-1], new)


def textbook_consistency_len(m: int, n: int, complete: bool = True) -> int:
    if m == n:
        return 0 if complete else 1
    k = Ref.split(n)
    if m <= k:
        return 1 + textbook_consistency_len(m, k, complete)
    return 1 + textbook_consistency_len(m - k, n - k, False)


def incl_valid(s: Incl) -> bool:
    """The oracle: is there a tree of ``size`` leaves with this root in which ``leaf`` sits at
    ``index`` and ``proof`` is its audit path? (Textbook recursion, not the RFC 9162 loop.)"""
    if not (isinstance(s.index, int) and isinstance(s.size, int)):
        return False
    if not 0 <= s.index < s.size:
        return False
    if not (is_hash(s.leaf) and is_hash(s.root) and all(is_hash(p) for p in s.proof)):
        return False
    if len(s.proof) != textbook_path_len(s.index, s.size):
        return False
    proof = [p for p in s.proof if isinstance(p, bytes)]
    assert isinstance(s.leaf, bytes)
    return textbook_path_root(s.index, s.size, s.leaf, proof) == s.root


def cons_valid(s: Cons) -> bool:
    """The oracle: are there trees of size1 and size2 with these roots, the first a prefix of
    the second, for which ``proof`` is the consistency proof? (Or the empty-tree case.)"""
    if not (isinstance(s.size1, int) and isinstance(s.size2, int)):
        return False
    if not 0 <= s.size1 <= s.size2:
        return False
    if not (is_hash(s.root1) and is_hash(s.root2) and all(is_hash(p) for p in s.proof)):
        return False
    if s.size1 == 0:
        # The empty tree is a prefix of every tree: the statement says nothing about root2, so
        # any root2 makes it true (callers check root2 by its signature), except that a tree
        # of size 0 has the empty root.
        return s.root1 == EMPTY_ROOT and not s.proof and (s.size2 > 0 or s.root2 == EMPTY_ROOT)
    if s.size1 == s.size2:
        return not s.proof and s.root1 == s.root2
    if len(s.proof) != textbook_consistency_len(s.size1, s.size2):
        return False
    proof = [p for p in s.proof if isinstance(p, bytes)]
    assert isinstance(s.root1, bytes)
    got = textbook_consistency_roots(s.size1, s.size2, True, proof, s.root1)
    return got == (s.root1, s.root2)


def expected_incl_reason(s: Incl) -> str:
    """What the verifier must name first, in its documented order of checks."""
    assert isinstance(s.index, int) and isinstance(s.size, int)
    if s.index < 0 or s.size < 0:
        return "must not be negative"
    if s.index >= s.size:
        return "leaf index out of range"
    if not (isinstance(s.leaf, bytes) and len(s.leaf) == 32):
        return "leaf hash is"
    if len(s.proof) != textbook_path_len(s.index, s.size):
        return "wrong proof length"
    if any(not isinstance(p, bytes) or len(p) != 32 for p in s.proof):
        return "proof hash"
    return "root mismatch"


def expected_cons_reason(s: Cons) -> str:
    assert isinstance(s.size1, int) and isinstance(s.size2, int)
    if s.size1 < 0 or s.size2 < 0:
        return "must not be negative"
    if s.size1 > s.size2:
        return "size1 is larger than size2"
    for name, root in (("root1", s.root1), ("root2", s.root2)):
        if not (isinstance(root, bytes) and len(root) == 32):
            return f"{name} is"
    want = 0 if s.size1 in (0, s.size2) else textbook_consistency_len(s.size1, s.size2)
    if len(s.proof) != want:
        return "wrong proof length"
    if any(not isinstance(p, bytes) or len(p) != 32 for p in s.proof):
        return "proof hash"
    if s.size1 == 0 and s.root1 != EMPTY_ROOT:
        return "root1 mismatch (not the empty-tree root)"
    if s.size1 == s.size2:
        return "root mismatch (equal sizes, different roots)"
    return "mismatch (the proof leads to"  # root1 or root2, whichever path the damage is on


def run(check: Callable[[], None]) -> str | None:
    try:
        check()
    except ProofError as e:
        return str(e)
    return None


def check_inclusion(s: Incl) -> str | None:
    return run(lambda: verify_inclusion(s.leaf, s.index, s.size, s.proof, s.root))  # type: ignore[arg-type]


def check_consistency(s: Cons) -> str | None:
    return run(lambda: verify_consistency(s.size1, s.size2, s.root1, s.root2, s.proof))  # type: ignore[arg-type]


def test_t29_inclusion_mutation_families_every_size_and_index_to_64() -> None:
    honest = checked = 0
    kinds: set[str] = set()
    valid: set[tuple[str, int, int, object]] = set()
    for size in range(1, MAX_SIZE + 1):
        root = REF.root(size)
        for index in range(size):
            proof = tuple(inclusion_proof(STORE, index, size))
            base = Incl(LEAVES[index], index, size, proof, root)
            assert check_inclusion(base) is None, (index, size)
            honest += 1
            for kind, mutated in inclusion_mutations(base):
                if mutated == base:
                    continue  # e.g. truncating an empty proof: not a different statement
                kinds.add(kind.split("[")[0])
                checked += 1
                error = check_inclusion(mutated)
                if incl_valid(mutated):
                    assert error is None, (kind, index, size, error)
                    valid.add((kind, index, size, mutated.size))
                    continue
                assert error is not None, f"{kind} accepted for leaf {index} of {size}"
                want = expected_incl_reason(mutated)
                assert want in error, (kind, index, size, error, want)
    assert honest == MAX_SIZE * (MAX_SIZE + 1) // 2
    # The only mutation that yields a true statement: growing the size by one when the path of
    # `index` in the larger tree has the same shape (same length, same left/right turns). The
    # statement is then true of a tree of size + 1 whose subtree on the path is the old last
    # leaf hash; nothing in an audit path names the size, which is why roots are only trusted
    # with the size they are signed with in a checkpoint.
    assert {kind for kind, *_ in valid} == {"treeSize-+-1"}
    for _, index, size, new_size in valid:
        assert new_size == size + 1
        assert textbook_path_len(index, size) == textbook_path_len(index, new_size)
    assert ("treeSize-+-1", 0, 3, 4) in valid
    assert {
        "modified-proof", "leafIdx-+-1", "leafIdx---1", "leafIdx-^-2", "treeSize-*-2",
        "treeSize-div-2", "preceding-garbage", "trailing-garbage", "inserted-component",
        "removed-component", "wrong-leaf", "empty-root", "random-root", "preceding-root",
        "trailing-root",
    } <= kinds
    assert checked > 50_000


def test_t29_consistency_mutation_families_every_size_pair_to_64() -> None:
    honest = checked = 0
    kinds: set[str] = set()
    valid_mutations: set[tuple[str, int, int]] = set()
    for size2 in range(1, MAX_SIZE + 1):
        for size1 in range(0, size2 + 1):
            proof = tuple(consistency_proof(STORE, size1, size2))
            root1 = EMPTY_ROOT if size1 == 0 else REF.root(size1)
            base = Cons(size1, size2, root1, REF.root(size2), proof)
            assert check_consistency(base) is None, (size1, size2)
            honest += 1
            for kind, mutated in consistency_mutations(base):
                if mutated == base:
                    continue  # swapped equal roots, truncating an empty proof, ...
                kinds.add(kind.split("[")[0])
                checked += 1
                error = check_consistency(mutated)
                if cons_valid(mutated):
                    assert error is None, (kind, size1, size2, error)
                    valid_mutations.add((kind, size1, size2))
                    continue
                assert error is not None, f"{kind} accepted for {size1} -> {size2}"
                want = expected_cons_reason(mutated)
                assert want in error, (kind, size1, size2, error, want)
    assert honest == sum(n + 1 for n in range(1, MAX_SIZE + 1))
    # From size1 == 0 the statement is true for any root2 and any size2 >= 1 (see cons_valid).
    from_empty = {(k, m, n) for k, m, n in valid_mutations if m == 0}
    assert {k for k, _, _ in from_empty} == {
        "random-root2", "size2-*-2", "size2-div-2", "size2-^-2"
    }
    # Otherwise only size2 ^ 2 (not an upstream family; added here), where flipping bit 1 of
    # size2 leaves the shape of the proof unchanged: the same hashes then prove consistency
    # with a tree of the other size2 that has root2. As with inclusion, a size is only
    # authenticated by the checkpoint signature over (size, root).
    others = valid_mutations - from_empty
    assert {k for k, _, _ in others} == {"size2-^-2"}
    for _, m, n in others:
        assert textbook_consistency_len(m, n) == textbook_consistency_len(m, n ^ 2)
    assert ("size2-^-2", 1, 5) in others
    assert {
        "empty-proof", "truncated-proof", "swapped-roots", "wrong-root1", "wrong-root2",
        "size1-+-1", "size1---1", "size2-*-2", "size2-div-2", "size1-^-2", "modified-proof",
        "preceding-garbage", "trailing-garbage",
    } <= kinds
    assert checked > 50_000


def test_t29_bad_argument_types_are_clear_errors() -> None:
    proof = inclusion_proof(STORE, 1, 4)
    leaf, root = LEAVES[1], REF.root(4)
    with pytest.raises(ProofError, match="leaf index must be an integer, got bool"):
        verify_inclusion(leaf, True, 4, proof, root)
    with pytest.raises(ProofError, match="tree size must be an integer, got str"):
        verify_inclusion(leaf, 1, "4", proof, root)  # type: ignore[arg-type]
    with pytest.raises(ProofError, match="leaf hash must be bytes, got str"):
        verify_inclusion(leaf.hex(), 1, 4, proof, root)  # type: ignore[arg-type]
    with pytest.raises(ProofError, match="not one string"):
        verify_inclusion(leaf, 1, 4, b"".join(proof), root)  # type: ignore[arg-type]
    with pytest.raises(ProofError, match="proof hash 1 must be bytes, got str"):
        verify_inclusion(leaf, 1, 4, [proof[0], proof[1].hex()], root)  # type: ignore[list-item]
    with pytest.raises(ProofError, match="no inclusion proof: leaf index 4 is not below"):
        inclusion_proof(STORE, 4, 4)
    with pytest.raises(ProofError, match="size1 5 is larger than size2 4"):
        consistency_proof(STORE, 5, 4)
    with pytest.raises(ProofError, match=r"no subtree \(0, 128\)"):
        inclusion_proof(STORE, 0, ORACLE_SIZE + 1)  # the store ends at 128 leaves
    assert consistency_proof_length(3, 3) == consistency_proof_length(0, 9) == 0
    with pytest.raises(ProofError, match="no consistency proof from size 4 to size 3"):
        consistency_proof_length(4, 3)
    with pytest.raises(ProofError, match="leaf index 3 is not in a tree of size 3"):
        inclusion_proof_length(3, 3)
    with pytest.raises(ProofError, match="no complete subtree at level 1, index 2"):
        MemoryTree(LEAVES[:5]).node(1, 2)
    assert issubclass(ProofError, AuditError)


# --- T30: tampered middle hashes, correct endpoints --------------------------------------------


def test_t30_consistency_proof_with_tampered_middle_hashes_is_rejected() -> None:
    """immudb CVE-2022-36111 pattern: the verifier must recompute both roots from every hash."""
    cases = 0
    for size2 in range(3, MAX_SIZE + 1):
        for size1 in range(1, size2):
            proof = consistency_proof(STORE, size1, size2)
            root1, root2 = REF.root(size1), REF.root(size2)
            for k in range(1, len(proof) - 1):  # keep first and last hash, tamper the middle
                for forged in (RANDOM_HASH, proof[0], proof[-1], root1, root2):
                    if forged == proof[k]:
                        continue
                    bad = [*proof[:k], forged, *proof[k + 1:]]
                    with pytest.raises(ProofError, match=r"root[12] mismatch"):
                        verify_consistency(size1, size2, root1, root2, bad)
                    cases += 1
    assert cases > 5_000


def test_t30_fork_proof_replayed_against_the_honest_root_fails_on_root2() -> None:
    """A forked tree shares the first size1 leaves: its honest proof matches root1 (every hash on
    root1's path is the same) and must still fail on root2's path."""
    for size2 in range(2, MAX_SIZE + 1):
        for size1 in range(1, size2):
            fork = LEAVES[:size1] + synthetic_leaves(size2 - size1, salt=b"fork")
            fork_store = SubtreeStore(fork)
            fork_proof = consistency_proof(fork_store, size1, size2)
            fork_root = root_at(fork_store, size2)
            verify_consistency(size1, size2, REF.root(size1), fork_root, fork_proof)
            with pytest.raises(ProofError, match="root2 mismatch"):
                verify_consistency(size1, size2, REF.root(size1), REF.root(size2), fork_proof)


def test_t30_every_hash_of_a_consistency_proof_is_used() -> None:
    """Changing any one hash changes root1 or root2, for every proof of sizes up to 64."""
    for size2 in range(2, MAX_SIZE + 1):
        for size1 in range(1, size2):
            proof = consistency_proof(STORE, size1, size2)
            for k in range(len(proof)):
                bad = [*proof[:k], flip(proof[k], 200), *proof[k + 1:]]
                with pytest.raises(ProofError, match=r"root[12] mismatch"):
                    verify_consistency(size1, size2, REF.root(size1), REF.root(size2), bad)


# --- the empty tree and equal sizes --------------------------------------------------------------


def test_consistency_from_the_empty_tree_needs_no_proof_and_the_empty_root() -> None:
    verify_consistency(0, 5, EMPTY_ROOT, REF.root(5), [])
    verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    with pytest.raises(ProofError, match="root1 mismatch \\(not the empty-tree root\\)"):
        verify_consistency(0, 5, REF.root(1), REF.root(5), [])
    with pytest.raises(ProofError, match="wrong proof length: 1 hashes, expected 0"):
        verify_consistency(0, 5, EMPTY_ROOT, REF.root(5), [LEAVES[0]])


def test_equal_sizes_need_equal_roots_and_an_empty_proof() -> None:
    verify_consistency(7, 7, REF.root(7), REF.root(7), [])
    with pytest.raises(ProofError, match="equal sizes, different roots"):
        verify_consistency(7, 7, REF.root(7), REF.root(6), [])
    with pytest.raises(ProofError, match="wrong proof length: 1 hashes, expected 0"):
        verify_consistency(7, 7, REF.root(7), REF.root(7), [REF.root(7)])


# --- NodeReader: only complete aligned subtrees ------------------------------------------------


def test_proofs_read_only_complete_subtrees_and_few_of_them() -> None:
    """The ledger's table holds complete subtrees only; a proof reads O(log n) of them."""
    for size in (1, 2, 3, 5, 8, 13, 64, 100, 127, 128):
        for index in range(size):
            STORE.reads = 0
            assert inclusion_proof(STORE, index, size) == REF.inclusion(index, size)
            assert STORE.reads <= 2 * size.bit_length(), (index, size, STORE.reads)
        STORE.reads = 0
        assert root_at(STORE, size) == REF.root(size)
        assert STORE.reads == size.bit_count()


def test_bulk_reader_gets_one_call_per_proof() -> None:
    store = BulkStore(LEAVES[:100])
    proof = inclusion_proof(store, 37, 100)
    assert store.bulk_calls == 1 and proof == REF.inclusion(37, 100)
    consistency_proof(store, 37, 100)
    assert store.bulk_calls == 2


def test_range_root_any_range_and_compact_range() -> None:
    for start in range(0, 40):
        for end in range(start, 41):
            assert range_root(STORE, start, end) == Ref(LEAVES[start:end]).root(end - start)
            coords = compact_range(start, end)
            covered = [
                i for level, index in coords
                for i in range(index << level, (index + 1) << level)
            ]
            assert covered == list(range(start, end))
            assert all(STORE.hashes.get(c) is not None for c in coords)
    with pytest.raises(ProofError, match="range end 3 is before its start 4"):
        range_root(STORE, 4, 3)


# --- Frontier -----------------------------------------------------------------------------------


def test_frontier_json_round_trip_and_corrupt_state() -> None:
    frontier = Frontier()
    frontier.extend(LEAVES[:45])
    again = Frontier.from_json(frontier.size, frontier.to_json())
    assert again.root() == frontier.root() == REF.root(45)
    assert again.append(LEAVES[45]) == frontier.copy().append(LEAVES[45])
    assert Frontier.from_reader(STORE, 45).hashes == frontier.hashes
    with pytest.raises(ProofError, match="frontier of size 45 needs 4 hashes, the stored state"):
        Frontier.from_json(45, frontier.to_json()[:3])
    with pytest.raises(ProofError, match="frontier hash 1 is not hex"):
        Frontier.from_json(45, [frontier.to_json()[0], "zz", *frontier.to_json()[2:]])
    with pytest.raises(ProofError, match="frontier hash 0 is 31 bytes"):
        Frontier.from_json(45, ["00" * 31, *frontier.to_json()[1:]])
    with pytest.raises(ProofError, match="leaf hash is 9 bytes"):
        frontier.append(SHORT)


def test_frontier_copy_is_independent() -> None:
    frontier = Frontier()
    frontier.extend(LEAVES[:5])
    snapshot = frontier.copy()
    frontier.extend(LEAVES[5:9])
    assert snapshot.size == 5 and snapshot.root() == REF.root(5)
    assert frontier.root() == REF.root(9)


# --- T44 (part): Hypothesis --------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(min_value=1, max_value=300),
    seed=st.binary(max_size=8),
    data=st.lists(st.binary(max_size=24), max_size=16),
    chunks=st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=8),
)
def test_t44_random_trees_all_honest_proofs_verify(
    n: int, seed: bytes, data: list[bytes], chunks: list[int]
) -> None:
    check_every_honest_statement((leaf_hashes(data) + synthetic_leaves(n, salt=seed))[:n], chunks)


@pytest.mark.parametrize("n", [1, 2, 255, 256, 257, 300])
def test_t44_fixed_trees_all_honest_proofs_verify(n: int) -> None:
    check_every_honest_statement(synthetic_leaves(n, salt=b"fixed"), [1, 7, 64, 3])


def check_every_honest_statement(leaves: list[bytes], chunks: list[int]) -> None:
    """Inclusion for all i < n and consistency for all m <= n verify; all views agree."""
    n = len(leaves)
    tree = MemoryTree(leaves)
    store = SubtreeStore(leaves)
    ref = Ref(leaves)
    roots = [ref.root(size) for size in range(n + 1)]
    # Frontier root == MemoryTree root == root_at over complete subtrees only, at every size.
    frontier = Frontier()
    for size in range(1, n + 1):
        for level, index, h in frontier.append(leaves[size - 1]):
            assert h == tree.node(level, index)  # newly completed nodes are the tree's nodes
            assert (index + 1) << level == size
        assert frontier.root() == roots[size] == root_at(tree, size) == root_at(store, size)
    assert tree.root() == roots[n] == root_from_leaves(leaves)
    # MemoryTree built in chunks equals the one built at once, level by level.
    chunked = MemoryTree()
    pos, k = 0, 0
    while pos < n:
        step = chunks[k % len(chunks)]
        chunked.extend(leaves[pos:pos + step])
        pos, k = pos + step, k + 1
    assert chunked.levels == tree.levels
    # The store got every complete subtree of the tree, and exactly those.
    assert len(store.hashes) == sum(len(level) for level in tree.levels)
    for (level, index), h in store.hashes.items():
        assert tree.node(level, index) == h
    for index in range(n):
        proof = inclusion_proof(store, index, n)
        assert proof == inclusion_proof(tree, index, n)
        verify_inclusion(leaves[index], index, n, proof, roots[n])
    for size1 in range(0, n + 1):
        proof = consistency_proof(store, size1, n)
        verify_consistency(size1, n, roots[size1], roots[n], proof)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(min_value=2, max_value=200),
    picks=st.data(),
)
def test_t44_random_inclusion_and_consistency_pairs(n: int, picks: st.DataObject) -> None:
    leaves = synthetic_leaves(n, salt=b"h")
    store = SubtreeStore(leaves)
    ref = Ref(leaves)
    size = picks.draw(st.integers(min_value=1, max_value=n))
    index = picks.draw(st.integers(min_value=0, max_value=size - 1))
    size1 = picks.draw(st.integers(min_value=1, max_value=size))
    incl = inclusion_proof(store, index, size)
    verify_inclusion(leaves[index], index, size, incl, ref.root(size))
    proof = consistency_proof(store, size1, size)
    verify_consistency(size1, size, ref.root(size1), ref.root(size), proof)
    if proof:
        k = picks.draw(st.integers(min_value=0, max_value=len(proof) - 1))
        bit = picks.draw(st.integers(min_value=0, max_value=255))
        bad = [*proof[:k], flip(proof[k], bit), *proof[k + 1:]]
        with pytest.raises(ProofError, match=r"root[12] mismatch"):
            verify_consistency(size1, size, ref.root(size1), ref.root(size), bad)


# --- proofs in trees of 10^6 .. 2^40 leaves (bench/ledger.py times them) -------------------------


@pytest.mark.parametrize("size", [10**6, 10**7, 10**8, 10**9, 2**40 + 12345])
def test_proofs_of_huge_trees_verify_and_a_changed_hash_fails(size: int) -> None:
    """Proof lengths and index arithmetic up to 2**40 leaves (bench/ledger.py times these)."""
    p = huge_proofs(size)
    verify_inclusion(p.leaf, p.index, size, p.inclusion, p.root)
    verify_consistency(p.size1, size, p.root1, p.root, p.consistency)
    with pytest.raises(ProofError):
        verify_inclusion(p.leaf, p.index, size, [*p.inclusion[:-1], bytes(32)], p.root)
    with pytest.raises(ProofError):
        verify_consistency(p.size1, size, p.root1, p.root, [*p.consistency[:-1], bytes(32)])


# --- no duckdb ----------------------------------------------------------------------------------


def test_merkle_module_imports_neither_duckdb_nor_crypto_libraries() -> None:
    code = (
        "import sys, monitoring.audit.merkle\n"
        "bad = [m for m in ('duckdb', 'cryptography', 'numpy') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""
