"""Merkle trees too large to store, for the tests and the bench of the audit ledger's proofs."""

from __future__ import annotations

from dataclasses import dataclass

from monitoring.audit.errors import ProofError
from monitoring.audit.merkle import (
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_at,
)


class UniformTree:
    """A real tree of any size whose leaves are all the same hash: level k nodes are all equal,
    so proofs for 10^9 or 2^40 leaves exist without storing them (proof lengths, index
    arithmetic and the time a verification takes at those sizes)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.level_hash = [leaf_hash(b"same")]
        for _ in range(64):
            self.level_hash.append(node_hash(self.level_hash[-1], self.level_hash[-1]))

    def node(self, level: int, index: int) -> bytes:
        if (index + 1) << level > self.size:
            raise ProofError(f"no complete subtree ({level}, {index})")
        return self.level_hash[level]


@dataclass(frozen=True)
class HugeProofs:
    """Honest proofs in a :class:`UniformTree`: entry ``size // 3`` in the whole tree, and
    the tree of ``size // 2 + 1`` leaves in the whole tree."""

    size: int
    root: bytes
    leaf: bytes
    index: int
    inclusion: list[bytes]
    size1: int
    root1: bytes
    consistency: list[bytes]


def huge_proofs(size: int) -> HugeProofs:
    """Inclusion and consistency proofs in a tree of ``size`` leaves."""
    tree = UniformTree(size)
    index, size1 = size // 3, size // 2 + 1
    return HugeProofs(size, root_at(tree, size), tree.level_hash[0], index,
                      inclusion_proof(tree, index, size), size1, root_at(tree, size1),
                      consistency_proof(tree, size1, size))
