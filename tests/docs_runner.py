"""Run the Python examples of a Markdown file as a reader would: ``python docs_runner.py FILE.md``.

Each ```python (or ```py, ```pycon) block runs, in order, in one namespace shared by the
whole file, as if pasted into one session.  A block written as a doctest session (``>>>``
prompts) has its outputs compared with what it shows (``ELLIPSIS`` and
``NORMALIZE_WHITESPACE`` on); any other block must run without error, and the ``test_*``
functions it defines are then called, as pytest would call them.  A block is exempt only when
the nearest non-blank line above it is ``<!-- skip: the reason -->``.

Prints ``ran FILE:LINE`` (or ``exempt FILE:LINE: reason``) for each block; on the first
failure it prints ``FAILED FILE:LINE`` and the report to stderr and exits with status 1.
``tests/test_docs_examples.py`` starts it in a fresh interpreter for each file.
"""

from __future__ import annotations

import doctest
import re
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The Markdown files whose examples run: the README, and the docs site once it exists.
DOC_GLOBS = ("README.md", "docs/**/*.md")
DOCTEST_FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
LANGUAGES = ("python", "py", "pycon")

_FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<ticks>`{3,}|~{3,})\s*(?P<info>[^`\s]*)")
_SKIP = re.compile(r"^\s*<!--\s*skip:(?P<reason>.*?)-->\s*$")


@dataclass(frozen=True)
class Example:
    """One fenced Python block of a Markdown file."""

    path: Path
    line: int  # 1-based line number of the block's first code line
    code: str
    skip: str | None  # why it is exempt, or None

    @property
    def where(self) -> str:
        """``FILE:LINE``, the file relative to the repository when it lies inside it."""
        try:
            name = self.path.relative_to(ROOT).as_posix()
        except ValueError:
            name = str(self.path)
        return f"{name}:{self.line}"

    @property
    def is_session(self) -> bool:
        """Written as an interactive session, whose shown outputs are asserted."""
        return any(line.lstrip().startswith(">>>") for line in self.code.splitlines())


def doc_files() -> list[Path]:
    """The Markdown files whose examples run, in a stable order."""
    found = {p.resolve() for pattern in DOC_GLOBS for p in ROOT.glob(pattern) if p.is_file()}
    return sorted(found)


def examples(path: Path) -> list[Example]:
    """The Python blocks of ``path`` (also indented ones, as in lists and admonitions)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, ticks = m["indent"], m["ticks"]
        closing = re.compile(rf"^{re.escape(indent)}{re.escape(ticks[0])}{{{len(ticks)},}}\s*$")
        end = i + 1
        while end < len(lines) and not closing.match(lines[end]):
            end += 1
        if m["info"].lower() in LANGUAGES:
            body = [line[len(indent):] if line.startswith(indent) else line.lstrip()
                    for line in lines[i + 1:end]]
            found.append(Example(path, i + 2, "\n".join(body) + "\n", _skip_reason(lines, i)))
        i = end + 1
    return found


def _skip_reason(lines: list[str], fence: int) -> str | None:
    """The reason of a ``<!-- skip: ... -->`` on the nearest non-blank line above ``fence``."""
    j = fence - 1
    while j >= 0 and not lines[j].strip():
        j -= 1
    m = _SKIP.match(lines[j]) if j >= 0 else None
    return m["reason"].strip() if m else None


def run_file(path: Path) -> int:
    """Run the examples of ``path`` in order in one namespace; 1 at the first failure."""
    namespace: dict[str, object] = {"__name__": "__main__"}
    for example in examples(path):
        if example.skip is not None:
            print(f"exempt {example.where}: {example.skip}", flush=True)
            continue
        try:
            failure = run_example(example, namespace)
        except (Exception, SystemExit):
            failure = traceback.format_exc()
        if failure:
            print(f"FAILED {example.where}\n{failure}", file=sys.stderr, flush=True)
            return 1
        print(f"ran {example.where}", flush=True)
    return 0


def run_example(example: Example, namespace: dict[str, object]) -> str:
    """Run one example in ``namespace``; return the doctest report ("" when it passed)."""
    if example.is_session:
        test = doctest.DocTestParser().get_doctest(example.code, namespace, example.where,
                                                   str(example.path), example.line - 1)
        report: list[str] = []
        doctest.DocTestRunner(optionflags=DOCTEST_FLAGS).run(test, out=report.append,
                                                             clear_globs=False)
        namespace.update(test.globs)  # DocTest ran in a copy: later blocks see its names
        return "".join(report)
    before = dict(namespace)
    # Padded with newlines so that tracebacks give the Markdown file's line numbers.
    code = compile("\n" * (example.line - 1) + example.code, str(example.path), "exec")
    exec(code, namespace)  # running the documentation is the point
    for name, value in list(namespace.items()):
        if name.startswith("test_") and callable(value) and before.get(name) is not value:
            value()  # a test the example defines runs, as pytest would run it
    return ""


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: python {Path(__file__).name} FILE.md")
    sys.exit(run_file(Path(sys.argv[1]).resolve()))
