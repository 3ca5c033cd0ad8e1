"""Rendezvous (highest-random-weight) hashing of content hashes onto runner URLs.

Every gateway replica orders the runners the same way for a given component, so each
runner keeps a warm share of compiled components, and removing one runner only moves the
components it owned (to their next choice) — the rest stay put.
"""

from __future__ import annotations

import hashlib


def _score(node: str, key: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{node}\x00{key}".encode(), digest_size=8).digest(), "big")


def rank(nodes: list[str], key: str) -> list[str]:
    """`nodes` ordered best-first for `key` (ties broken by the node string)."""
    return sorted(nodes, key=lambda n: (-_score(n, key), n))
