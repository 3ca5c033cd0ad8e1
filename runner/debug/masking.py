"""Mask an install's secret values (and their common encodings) in debug lines.

Exact-match redaction, as GitHub Actions does it: the value itself, its base64 forms
(standard and URL-safe, padded or not) and its URL-encoded form. A secret that is
transformed in any other way (split, hashed, inside a larger base64 blob) is not caught;
the runbook says so.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import quote

MASK = "***"
# Shorter values would mask ordinary words and numbers all over the output.
MIN_SECRET_CHARS = 4


def secret_forms(value: str) -> set[str]:
    raw = value.encode()
    forms = {value, quote(value, safe="")}
    for enc in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
        forms.add(enc)
        forms.add(enc.rstrip("="))
    return {f for f in forms if len(f) >= MIN_SECRET_CHARS}


class SecretMasker:
    """Built once per set of opened secrets; `mask` is one regex pass per line."""

    __slots__ = ("_re", "max_len")

    def __init__(self, values: Iterable[str]) -> None:
        forms: set[str] = set()
        for value in values:
            if len(value) >= MIN_SECRET_CHARS:
                forms |= secret_forms(value)
        # Longest first so that a value is masked whole before any of its substrings.
        ordered = sorted(forms, key=len, reverse=True)
        self._re = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self.max_len = len(ordered[0]) if ordered else 0

    def __bool__(self) -> bool:
        return self._re is not None

    def mask(self, text: str) -> tuple[str, int]:
        """The masked text and how many occurrences were replaced."""
        if self._re is None:
            return text, 0
        return self._re.subn(MASK, text)


NO_MASK = SecretMasker(())
