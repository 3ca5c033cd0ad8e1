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


_SCHEMA_TOKEN_RE = re.compile(
    r'"(?:[^"\\]|\\.)*"'  # a string (skipped)
    r"|//[^\n]*"  # a comment (skipped)
    r"|\bnamespace\s+(?P<ns>[A-Za-z_][\w:]*)\s*\{"
    r"|\bentity\s+(?P<names>[A-Za-z_][\w\s,]*?)\s+enum\s*\[(?P<values>[^\]]*)\]"
    r"|(?P<brace>[{}])"
)
_STRING_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')


def find_enum_types(schema_text: str) -> dict[str, tuple[str, ...]]:
    """Enumerated entity types of a Cedar schema (human syntax): qualified name -> ids, in order.

    A scan, not a parser: cedarpy offers no schema introspection. It is used to word
    messages, never to decide anything; a declaration it misses only loses the list of
    valid ids from a message."""
    enums: dict[str, tuple[str, ...]] = {}
    namespaces: list[tuple[str, int]] = []  # (name, brace depth inside it)
    depth = 0
    for match in _SCHEMA_TOKEN_RE.finditer(schema_text):
        if match.group("ns"):
            depth += 1
            namespaces.append((match.group("ns"), depth))
        elif match.group("names"):
            prefix = f"{namespaces[-1][0]}::" if namespaces else ""
            values = tuple(_STRING_RE.findall(match.group("values")))
            for name in match.group("names").split(","):
                if name.strip():
                    enums[prefix + name.strip()] = values
        elif match.group("brace") == "{":
            depth += 1
        elif match.group("brace") == "}":
            if namespaces and namespaces[-1][1] == depth:
                namespaces.pop()
            depth -= 1
    return enums


def find_reference_line(text: str, policy_id: str, entity_type: str, entity_id: str) -> int | None:
    """The line where the policy `policy_id` first names `Type::"id"` (the type's last
    segment suffices: a policy may write it qualified or not), or None."""
    starts = list(re.finditer(_ID_RE, text))
    for index, match in enumerate(starts):
        if match.group(1) != policy_id:
            continue
        end = starts[index + 1].start() if index + 1 < len(starts) else len(text)
        name = re.escape(entity_type.split("::")[-1])
        ref = re.compile(rf'\b{name}\s*::\s*"{re.escape(entity_id)}"')
        found = ref.search(text, match.end(), end)
        return text.count("\n", 0, found.start()) + 1 if found else None
    return None
