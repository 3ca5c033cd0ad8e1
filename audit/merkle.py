"""RFC 6962 / RFC 9162 Merkle tree hashing, compact ranges, inclusion and consistency proofs.

Leaf hash `SHA-256(0x00 || data)`, interior node `SHA-256(0x01 || left || right)`, empty
tree `SHA-256("")`. A tree of n > 1 leaves splits at the largest power of two smaller
than n. Verification follows RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2 (consistency)
so proofs interoperate with Certificate Transparency / Trillian / Tessera tooling.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

_sha256 = hashlib.sha256


def leaf_hash(data: bytes) -> bytes:
    return _sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return _sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


class CompactRange:
    """The frontier of a tree: roots of its perfect subtrees, largest (leftmost) first.

    Appending a leaf costs O(1) amortized hashes; the root costs O(log n). Its serialized
    form (the concatenated hashes) is what the log keeps in its head row, so a writer can
    continue the tree without reading old leaves.
    """

    __slots__ = ("_stack", "size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0 or len(hashes) != bin(size).count("1"):
            raise ValueError(f"a compact range of size {size} has {bin(size).count('1')} hashes")
        self.size = size
        self._stack = list(hashes)

    def append(self, leaf: bytes) -> None:
        stack = self._stack
        stack.append(leaf)
        n = self.size
        while n & 1:
            right = stack.pop()
            stack[-1] = _sha256(b"\x01" + stack[-1] + right).digest()
            n >>= 1
        self.size += 1

    def extend(self, leaves: Iterable[bytes]) -> None:
        for leaf in leaves:
            self.append(leaf)

    def root(self) -> bytes:
        stack = self._stack
        if not stack:
            return EMPTY_ROOT
        h = stack[-1]
        for left in reversed(stack[:-1]):
            h = node_hash(left, h)
        return h

    @property
    def hashes(self) -> tuple[bytes, ...]:
        return tuple(self._stack)

    def copy(self) -> CompactRange:
        return CompactRange(self.size, self._stack)

    def to_bytes(self) -> bytes:
        return b"".join(self._stack)

    @classmethod
    def from_bytes(cls, size: int, data: bytes) -> CompactRange:
        if len(data) % HASH_SIZE:
            raise ValueError("frontier length is not a multiple of 32")
        return cls(size, [data[i : i + HASH_SIZE] for i in range(0, len(data), HASH_SIZE)])


def root_of(leaves: Sequence[bytes], lo: int = 0, hi: int | None = None) -> bytes:
    """Merkle tree hash of leaf hashes `leaves[lo:hi]`."""
    hi = len(leaves) if hi is None else hi
    if hi <= lo:
        return EMPTY_ROOT
    cr = CompactRange()
    for i in range(lo, hi):
        cr.append(leaves[i])
    return cr.root()


def inclusion_proof(leaves: Sequence[bytes], index: int, size: int | None = None) -> list[bytes]:
    """Audit path for leaf `index` in the tree made of the first `size` leaf hashes.

    Ordered from the leaf's sibling up to the root's child (RFC 6962 §2.1.1).
    """
    size = len(leaves) if size is None else size
    if not 0 <= index < size <= len(leaves):
        raise ValueError(f"no leaf {index} in a tree of size {size}")
    path: list[bytes] = []
    lo, hi = 0, size
    # Walk down from the root, collecting the sibling subtree roots; reverse at the end.
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(root_of(leaves, lo + k, hi))
            hi = lo + k
        else:
            path.append(root_of(leaves, lo, lo + k))
            lo = lo + k
    path.reverse()
    return path


def verify_inclusion(leaf: bytes, index: int, size: int, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 §2.1.3.2."""
    if index >= size or index < 0:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def consistency_proof(leaves: Sequence[bytes], old: int, new: int | None = None) -> list[bytes]:
    """Proof that the tree of size `old` is a prefix of the tree of size `new` (RFC 6962 §2.1.2)."""
    new = len(leaves) if new is None else new
    if not 0 <= old <= new <= len(leaves):
        raise ValueError(f"bad consistency range {old}..{new}")
    if old == 0 or old == new:
        return []
    proof: list[bytes] = []
    lo, hi, m, complete = 0, new, old, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                proof.append(root_of(leaves, lo, hi))
            break
        k = _split(n)
        if m <= k:
            proof.append(root_of(leaves, lo + k, hi))
            hi = lo + k
        else:
            proof.append(root_of(leaves, lo, lo + k))
            lo, m, complete = lo + k, m - k, False
    proof.reverse()
    return proof


def verify_consistency(old: int, new: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """RFC 9162 §2.1.4.2."""
    if old < 0 or new < old:
        return False
    if old == new:
        return not proof and old_root == new_root
    if old == 0:
        return not proof
    if not proof:
        return False
    path = list(proof)
    if old & (old - 1) == 0:  # exact power of two
        path.insert(0, old_root)
    fn, sn = old - 1, new - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return fr == old_root and sr == new_root and sn == 0
