"""A policy bundle's files, read from a directory, and its content-addressed revision."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

SCHEMA_SUFFIX = ".cedarschema"
POLICY_SUFFIX = ".cedar"
TESTS_DIR = "tests"


@dataclass(frozen=True)
class Problem:
    """One finding about a bundle, located as precisely as we can."""

    file: str
    message: str
    line: int | None = None
    policy_id: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        who = f" [{self.policy_id}]" if self.policy_id else ""
        return f"{where}:{who} {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "policy_id": self.policy_id, "message": self.message}


class BundleError(Exception):
    """A bundle that cannot become active, with every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems) or "invalid policy bundle")


@dataclass(frozen=True)
class BundleSource:
    """The text of a bundle: schema, policy files and test files, keyed by relative path."""

    files: Mapping[str, str]
    origin: str = "<memory>"
    _revision: str = field(default="", compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "files", MappingProxyType(dict(sorted(self.files.items()))))
        object.__setattr__(self, "_revision", compute_revision(self.files))

    @classmethod
    def from_dir(cls, directory: Path | str) -> BundleSource:
        root = Path(directory)
        if not root.is_dir():
            raise BundleError([Problem(str(root), "policy directory not found")])
        files: dict[str, str] = {}
        for path in sorted(root.iterdir()):
            if path.is_file() and path.suffix in (SCHEMA_SUFFIX, POLICY_SUFFIX):
                files[path.name] = path.read_text(encoding="utf-8")
        tests = root / TESTS_DIR
        if tests.is_dir():
            for path in sorted(tests.glob("*.json")):
                files[f"{TESTS_DIR}/{path.name}"] = path.read_text(encoding="utf-8")
        return cls(files, origin=str(root))

    @property
    def revision(self) -> str:
        return self._revision

    @property
    def schema_files(self) -> list[str]:
        return [n for n in self.files if "/" not in n and n.endswith(SCHEMA_SUFFIX)]

    @property
    def policy_files(self) -> list[str]:
        return [n for n in self.files if "/" not in n and n.endswith(POLICY_SUFFIX)]

    @property
    def test_files(self) -> list[str]:
        return [n for n in self.files if n.startswith(f"{TESTS_DIR}/") and n.endswith(".json")]

    def to_json(self) -> str:
        return json.dumps({"files": dict(self.files), "origin": self.origin}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> BundleSource:
        data = json.loads(text)
        return cls(dict(data["files"]), origin=str(data.get("origin", "<store>")))


def compute_revision(files: Mapping[str, str]) -> str:
    """sha256 over the schema and policy files (names and contents, length-framed).

    Test files are not part of the revision: they do not change any decision.
    """
    digest = hashlib.sha256()
    for name in sorted(files):
        if "/" in name or not name.endswith((SCHEMA_SUFFIX, POLICY_SUFFIX)):
            continue
        for part in (name.encode(), files[name].encode()):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return "sha256:" + digest.hexdigest()


def short_revision(revision: str) -> str:
    return revision.removeprefix("sha256:")[:12]
