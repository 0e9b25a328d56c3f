"""Every example in the documentation runs, and every output it shows is what you get.

* Markdown: the Python blocks of ``README.md`` and ``docs/**/*.md`` (``docs_runner.DOC_GLOBS``)
  run file by file, each file in a fresh interpreter started in an empty folder (no conftest,
  no Hypothesis profile, no state from other tests: a reader has none of them); see
  ``docs_runner`` for the rules.  Exempt blocks show up as skips with their reasons.
* Docstrings: every example in a docstring of a module of the ``xcorr`` package runs as a
  doctest.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import os
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import docs_runner
import pytest
from docs_runner import DOCTEST_FLAGS, ROOT, Example, doc_files, examples

import xcorr
from xcorr import _dispatch

RUNNER = docs_runner.__file__
FILES = doc_files()


def run_markdown(path: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``docs_runner`` on ``path`` in a fresh interpreter that imports this checkout's xcorr."""
    env = {**os.environ, "MPLBACKEND": "Agg",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("HYPOTHESIS_PROFILE", None)  # the reader's Hypothesis has its default settings
    return subprocess.run([sys.executable, RUNNER, str(path)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


# -- Markdown ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_markdown_examples_run(path: Path, tmp_path: Path) -> None:
    p = run_markdown(path, tmp_path)
    assert p.returncode == 0, f"{p.stderr}\n--- stdout ---\n{p.stdout}"
    ran = re.findall(r"^ran (\S+)$", p.stdout, re.M)
    # every block ran: none was lost by the parser or left out without a marker
    assert ran == [e.where for e in examples(path) if e.skip is None], p.stdout


@pytest.mark.parametrize("example", [e for f in FILES for e in examples(f) if e.skip is not None],
                         ids=lambda e: e.where)
def test_exempt_example(example: Example) -> None:
    assert example.skip, f"{example.where}: the skip marker must say why"
    pytest.skip(f"{example.where} not run: {example.skip}")


def test_the_readme_and_docs_are_read() -> None:
    assert ROOT / "README.md" in FILES
    assert sorted(ROOT.glob("docs/**/*.md")) == [f for f in FILES if f.parent != ROOT]
    assert len(examples(ROOT / "README.md")) >= 3


def test_parser_finds_blocks_markers_and_sessions(tmp_path: Path) -> None:
    md = tmp_path / "page.md"
    md.write_text("text\n```bash\nls\n```\n<!-- skip: needs a GPU -->\n\n```python\n"
                  "import cupy\n```\n- item\n\n    ```python\n    >>> 1 + 1\n    2\n    ```\n"
                  "````py\na = 1\n```\nstill inside\n````\n")
    got = [(e.line, e.code, e.skip, e.is_session) for e in examples(md)]
    assert got == [
        (8, "import cupy\n", "needs a GPU", False),
        (13, ">>> 1 + 1\n2\n", None, True),
        (17, "a = 1\n```\nstill inside\n", None, False),
    ]


def test_runner_checks_shown_output_and_stops_at_the_first_failure(tmp_path: Path) -> None:
    md = tmp_path / "page.md"
    md.write_text("```python\nx = 6\n```\n```pycon\n>>> x * 7\n41\n```\n"
                  "```python\nprint('not reached')\n```\n")
    p = run_markdown(md, tmp_path)
    assert p.returncode == 1
    assert p.stdout.splitlines() == [f"ran {md}:2"]
    assert f"FAILED {md}:5" in p.stderr
    assert "Expected:\n    41\nGot:\n    42" in p.stderr


def test_runner_shares_names_between_sessions_and_blocks(tmp_path: Path) -> None:
    md = tmp_path / "page.md"
    md.write_text("```pycon\n>>> a = 6\n```\n```python\nb = a * 7\n```\n"
                  "```pycon\n>>> b\n42\n```\n")
    p = run_markdown(md, tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [f"ran {md}:2", f"ran {md}:5", f"ran {md}:8"]


def test_runner_calls_the_tests_a_block_defines(tmp_path: Path) -> None:
    md = tmp_path / "page.md"
    md.write_text("```python\ndef helper():\n    raise AssertionError('helpers are not run')\n"
                  "\ndef test_fails():\n    assert 1 == 2, 'the test ran'\n```\n")
    p = run_markdown(md, tmp_path)
    assert p.returncode == 1
    assert "the test ran" in p.stderr and "helpers are not run" not in p.stderr
    assert f'File "{md}", line 6, in test_fails' in p.stderr  # the Markdown file's line


def test_testing_guide_example_passes_under_pytest_with_the_default_deadline(
        tmp_path: Path) -> None:
    """Issue 16, defect 1: pasted into a test module and run by pytest, the ``xcorr.testing``
    example (then in the README, now in docs/guide/testing.md) failed every time with
    "Unreliable test timings" (its first example paid the frameworks' start-up, 3-6 s,
    against Hypothesis's default deadline of 200 ms)."""
    block = next(e for e in examples(ROOT / "docs" / "guide" / "testing.md")
                 if "xt.assert_backends_agree" in e.code and not e.is_session)
    (tmp_path / "test_readme_example.py").write_text(block.code)
    # Hypothesis's defaults (deadline 200 ms) but 10 examples instead of 100, to save time:
    # the first example, which pays the start-up, is the one that failed.
    (tmp_path / "conftest.py").write_text(
        "from hypothesis import settings\n"
        "settings.register_profile('few', max_examples=10)\n"
        "settings.load_profile('few')\n")
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("HYPOTHESIS_PROFILE", None)
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        "test_readme_example.py"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 passed" in p.stdout


def _bash_blocks(path: Path) -> list[str]:
    return re.findall(r"^```bash\n(.*?)^```", path.read_text(), re.M | re.S)


def test_readme_gives_the_cpu_torch_command_before_the_extras() -> None:
    """Issue 16, defect 9; and the two quick-start commands stay exactly as they were."""
    blocks = _bash_blocks(ROOT / "README.md")
    quick_start = blocks[0].splitlines()
    assert quick_start[1] == "pip install . && python -m xcorr demo"
    assert quick_start[3] == 'pip install -e ".[all]" && python -m pytest -q'
    cpu = "pip install torch --index-url https://download.pytorch.org/whl/cpu"
    assert any(block.strip() == cpu for block in blocks[1:]), blocks
    text = (ROOT / "README.md").read_text()
    assert text.index(quick_start[3]) < text.index(cpu) < text.index("## Usage")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    command = _bash_blocks(ROOT / "README.md")[0].splitlines()[3]
    assert command in [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]


# -- docstrings ----------------------------------------------------------------------------------


def _docstring_examples() -> list[object]:
    params = []
    names = ["xcorr", *(m.name for m in pkgutil.walk_packages(xcorr.__path__, "xcorr."))]
    for name in names:
        if name.endswith(".__main__"):
            continue  # importing one runs a command; they have no docstring examples
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # a backend whose framework is not installed here
            params.append(pytest.param(None, id=name, marks=pytest.mark.skip(
                reason=f"{name}: its framework is not installed ({exc})")))
            continue
        params += [pytest.param(t, id=t.name)
                   for t in doctest.DocTestFinder().find(module, name) if t.examples]
    return params


@pytest.mark.parametrize("test", _docstring_examples())
def test_docstring_example(test: doctest.DocTest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_dispatch, "_default", _dispatch._default)  # undone after the test
    report: list[str] = []
    result = doctest.DocTestRunner(optionflags=DOCTEST_FLAGS).run(test, out=report.append)
    missing = re.search(r"ModuleNotFoundError: No module named '(\w+)", "".join(report))
    if result.failed and missing and importlib.util.find_spec(missing[1]) is None:
        pytest.skip(f"{test.name}: needs {missing[1]}, which is not installed")
    assert result.failed == 0, "".join(report)
