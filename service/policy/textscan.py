"""Locate policies inside Cedar text: statement boundaries and the lines they start on.

Cedar's parser reports no line numbers, so the loader splits a file into statements
itself (a `;` outside strings and comments ends one) to name the line of a problem.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Statement:
    text: str
    line: int  # 1-based line of the statement's first token


def split_statements(text: str) -> list[Statement]:
    statements: list[Statement] = []
    buf: list[str] = []
    line = 1
    start_line: int | None = None
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "/" and i + 1 < n and text[i + 1] == "/":
            end = text.find("\n", i)
            end = n if end == -1 else end
            buf.append(text[i:end])
            i = end
            continue
        if ch == '"':
            if start_line is None:
                start_line = line
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            chunk = text[i : j + 1]
            line += chunk.count("\n")
            buf.append(chunk)
            i = j + 1
            continue
        if ch == "\n":
            line += 1
        elif not ch.isspace() and start_line is None:
            start_line = line
        buf.append(ch)
        if ch == ";":
            statements.append(Statement("".join(buf), start_line or line))
            buf, start_line = [], None
        i += 1
    if start_line is not None:  # trailing text without `;`
        statements.append(Statement("".join(buf), start_line))
    return statements


_ID_RE = r'@id\(\s*"((?:[^"\\]|\\.)*)"\s*\)'


def find_id_line(text: str, policy_id: str) -> int | None:
    for match in re.finditer(_ID_RE, text):
        if match.group(1) == policy_id:
            return text.count("\n", 0, match.start()) + 1
    return None
