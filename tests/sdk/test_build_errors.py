"""The scaffolds' build scripts report problems in one readable line (issue 21, part 3).

Reproductions: `python build.py` on a Python without componentize-py crashed with
`PackageNotFoundError`; a Python syntax error came after ~10 s under a Rust backtrace and a
`CalledProcessError`; a JS syntax error said only `failed to parse JS source, encountered [1]
errors`, without a line. Now: the toolchain is checked first (naming the interpreter and what to
install), and guest errors are `file:line:col: message` on stderr, exit 1, nothing built.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from service.cli.scaffold import Lang, scaffold
from tests.sdk.conftest import EXAMPLES, node_available


def project(tmp_path: Path, lang: Lang) -> Path:
    target = tmp_path / f"p-{lang.value}"
    scaffold("com.acme.broken", lang, target, publisher="acme")
    return target


def run(cmd: list[str], cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def one_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 1, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr  # no traceback, no backtrace
    assert "Traceback" not in res.stderr and res.stdout == ""
    return lines[0]


def test_python_without_componentize_py_names_the_fix(tmp_path: Path) -> None:
    p = project(tmp_path, Lang.python)
    res = run([sys.executable, "-S", "build.py", "--bundle"], p)  # -S: no site-packages, so no componentize-py
    line = one_line(res)
    assert "componentize-py is not installed for " + sys.executable in line
    assert f"{sys.executable} -m pip install componentize-py==0.25.1" in line
    assert not (p / "build" / "bundle").exists()


def test_python_syntax_error_is_file_line_col_at_once(tmp_path: Path) -> None:
    p = project(tmp_path, Lang.python)
    with (p / "src" / "app.py").open("a") as fh:
        fh.write("\ndef broken(:\n")
    lines = (p / "src" / "app.py").read_text().splitlines()
    res = run([sys.executable, "build.py", "--bundle"], p, timeout=30)  # before componentize-py runs
    assert one_line(res) == f"src/app.py:{len(lines)}:12: SyntaxError: invalid syntax"


@pytest.mark.slow
def test_python_error_at_import_names_the_line(tmp_path: Path) -> None:
    p = project(tmp_path, Lang.python)
    with (p / "src" / "app.py").open("a") as fh:
        fh.write("undefined_name()\n")
    n = len((p / "src" / "app.py").read_text().splitlines())
    line = one_line(run([sys.executable, "build.py"], p))
    assert line == f"src/app.py:{n}: NameError: name 'undefined_name' is not defined  (--verbose: full output)"
    verbose = run([sys.executable, "build.py", "--verbose"], p)
    assert verbose.returncode == 1 and "Caused by:" in verbose.stderr  # the toolchain's output, on request


def needs_node() -> None:
    if not node_available():
        pytest.skip("node/npm not installed")


def test_js_without_componentize_js_names_the_fix(tmp_path: Path) -> None:
    needs_node()
    p = project(tmp_path, Lang.js)
    line = one_line(run(["node", "build.mjs", "--bundle"], p))
    assert line.startswith("build.mjs: componentize-js is not installed: run `npm ci` in " + str(p))


def test_js_syntax_error_is_file_line_col(tmp_path: Path) -> None:
    needs_node()
    p = project(tmp_path, Lang.js)
    (p / "node_modules" / "@bytecodealliance" / "componentize-js").mkdir(parents=True)  # found, never loaded
    with (p / "src" / "app.js").open("a") as fh:
        fh.write("const x = ;\n")
    n = len((p / "src" / "app.js").read_text().splitlines())
    line = one_line(run(["node", "build.mjs"], p, timeout=30))
    assert line == f"src/app.js:{n}:11: SyntaxError: Unexpected token ';'"


@pytest.mark.slow
def test_js_error_at_initialization_names_the_line(tmp_path: Path) -> None:
    needs_node()
    subprocess.run(["make", "-s", "-C", str(EXAMPLES), "js-deps"], check=True, capture_output=True, timeout=600)
    p = project(tmp_path, Lang.js)
    (p / "node_modules").symlink_to(EXAMPLES / "js-notes" / "node_modules")
    with (p / "src" / "app.js").open("a") as fh:
        fh.write("undefinedName();\n")
    n = len((p / "src" / "app.js").read_text().splitlines())
    line = one_line(run(["node", "build.mjs"], p))
    assert line == f"src/app.js:{n}:1: ReferenceError: undefinedName is not defined  (--verbose: full output)"
