"""Canonical formatting of policy files (Cedar's own formatter; comments are kept)."""

from __future__ import annotations

from pathlib import Path

import cedarpy

LINE_WIDTH = 80
INDENT = 2


def format_text(text: str) -> str:
    """Formatted text; raises ValueError when the text does not parse."""
    formatted = cedarpy.format_policies(text, LINE_WIDTH, INDENT).rstrip("\n")
    return formatted + "\n"


def policy_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.cedar") if p.is_file())


def needs_formatting(path: Path) -> bool:
    text = path.read_text(encoding="utf-8")
    return format_text(text) != text
