"""A debug justification counts the characters a reader sees (issue 17, item 5)."""

from __future__ import annotations

import pytest

from service.debug.justification import visible_text
from tests.gateway.conftest import OTHER


@pytest.mark.parametrize(("given", "visible"), [
    ("\u200b" * 10, ""),  # zero-width spaces
    ("\u200c\u200d\u2060\ufeff\u202e\u2066" * 3, ""),  # joiners, word joiner, BOM, bidi controls
    ("\u3164" * 10 + "\u2800" * 5, ""),  # Hangul filler, braille blank
    ("  incident\u00a0\u00a0 INC-42\n\tnow  ", "incident INC-42 now"),  # any whitespace run is one space
    ("in\u200bci\u200bdent", "incident"),
    ("\x00\x07ok\x1b", "ok"),
    (None, ""),
    ("déjà vu 42", "déjà vu 42"),
])
def test_visible_text(given: str | None, visible: str) -> None:
    assert visible_text(given) == visible


def test_zero_width_justification_does_not_pass_the_length_rule(make_debug_env) -> None:  # type: ignore[no-untyped-def]
    """Issue 17 (5): ten zero-width spaces passed the platform admin's 10-character rule."""
    env = make_debug_env()
    assert env.open("platform", tenant=OTHER, justification="\u200b" * 10).status_code == 403
    assert env.open("platform", tenant=OTHER, justification="\u200b" * 5 + "abc" + " " * 20).status_code == 403
    ok = env.open("platform", tenant=OTHER, justification=" incident\u200b INC-42 ")
    assert ok.status_code == 201, ok.text
