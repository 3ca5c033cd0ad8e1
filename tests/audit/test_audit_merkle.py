"""RFC 6962 hashing against the transparency-dev vectors, plus proof properties."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root_of,
    verify_consistency,
    verify_inclusion,
)

# transparency-dev/merkle testonly/constants.go
LEAF_INPUTS = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"]
ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
LEAVES = [leaf_hash(bytes.fromhex(x)) for x in LEAF_INPUTS]


def mth(leaves: list[bytes]) -> bytes:
    """The recursive definition from RFC 6962 §2.1, as the reference."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = 1
    while k * 2 < n:
        k *= 2
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


@pytest.mark.parametrize("size", range(9))
def test_rfc6962_vectors(size: int) -> None:
    assert root_of(LEAVES[:size]).hex() == ROOTS[size]
    cr = CompactRange()
    cr.extend(LEAVES[:size])
    assert cr.root().hex() == ROOTS[size]


def test_leaf_and_node_prefixes() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert EMPTY_ROOT.hex() == ROOTS[0]


def test_compact_range_roundtrip_and_streaming_equals_recursive() -> None:
    leaves = [leaf_hash(str(i).encode()) for i in range(130)]
    cr = CompactRange()
    for n, leaf in enumerate(leaves, start=1):
        cr.append(leaf)
        assert cr.root() == mth(leaves[:n])
        again = CompactRange.from_bytes(cr.size, cr.to_bytes())
        assert again.root() == cr.root()
    with pytest.raises(ValueError):
        CompactRange.from_bytes(3, cr.to_bytes()[:32])


def test_all_proofs_small_trees() -> None:
    leaves = [leaf_hash(str(i).encode()) for i in range(40)]
    bad = b"\xff" * 32
    for n in range(1, 41):
        root = root_of(leaves, 0, n)
        for i in range(n):
            path = inclusion_proof(leaves, i, n)
            assert verify_inclusion(leaves[i], i, n, path, root)
            assert not verify_inclusion(leaves[i], i, n, path, bad)
            assert not verify_inclusion(leaves[(i + 1) % 40], i, n, path, root)
        for m in range(n + 1):
            proof = consistency_proof(leaves, m, n)
            assert verify_consistency(m, n, root_of(leaves, 0, m), root, proof)
            if 0 < m < n:
                assert not verify_consistency(m, n, root_of(leaves, 0, m), bad, proof)
                assert not verify_consistency(m, n, bad, root, proof)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), data=st.data())
def test_proofs_property(n: int, data: st.DataObject) -> None:
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(n)]
    root = root_of(leaves)
    assert root == mth(leaves)
    i = data.draw(st.integers(0, n - 1))
    path = inclusion_proof(leaves, i)
    assert verify_inclusion(leaves[i], i, n, path, root)
    if path:
        j = data.draw(st.integers(0, len(path) - 1))
        bit = data.draw(st.integers(0, 255))
        flipped = bytearray(path[j])
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert not verify_inclusion(leaves[i], i, n, [*path[:j], bytes(flipped), *path[j + 1 :]], root)
    m = data.draw(st.integers(0, n))
    proof = consistency_proof(leaves, m)
    assert verify_consistency(m, n, root_of(leaves, 0, m), root, proof)


def test_bad_ranges() -> None:
    leaves = [leaf_hash(b"x")] * 4
    with pytest.raises(ValueError):
        inclusion_proof(leaves, 4)
    with pytest.raises(ValueError):
        consistency_proof(leaves, 3, 5)
    assert not verify_inclusion(leaves[0], 5, 4, [], root_of(leaves))
    assert not verify_consistency(3, 2, EMPTY_ROOT, EMPTY_ROOT, [])
