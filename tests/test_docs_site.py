"""The documentation site: it builds strictly, its gallery scripts draw their pictures, the
README's links lead somewhere, and every public function's docstring has its sections.

The examples inside the pages and docstrings run in ``test_docs_examples.py``.  CI (``.ci/run``)
runs this module as part of the whole suite.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import xcorr

ROOT = Path(__file__).resolve().parents[1]
GALLERY = ROOT / "docs" / "gallery"
SCRIPTS = sorted(GALLERY.glob("*.py"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# One worker runs this module (pytest-xdist's loadgroup), so the gallery is drawn once.
pytestmark = pytest.mark.xdist_group("docs_site")


def _env() -> dict[str, str]:
    """This checkout's xcorr first on the path, no GUI, no MkDocs 2 banner."""
    return {**os.environ, "MPLBACKEND": "Agg", "NO_MKDOCS_2_WARNING": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                        os.environ.get("PYTHONPATH")]))}


# -- the site ------------------------------------------------------------------------------------


def _missing(*modules: str) -> str | None:
    gone = [m for m in modules if importlib.util.find_spec(m) is None]
    return ", ".join(gone) or None


# Builds the site as `mkdocs build --strict` does, with ``docs_dir`` pointed at a copy of docs/
# (mkdocs has no command-line option for it; every other path stays relative to mkdocs.yml).
BUILD = """
import sys
from mkdocs.commands.build import build
from mkdocs.config import load_config
build(load_config(config_file=sys.argv[1], docs_dir=sys.argv[2], site_dir=sys.argv[3],
                  strict=True))
"""


@pytest.fixture(scope="module")
def drawn(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, str | None]]:
    """Each gallery script run once from scratch: ``{name: (its PNG, error or None)}``."""
    if _missing("matplotlib"):
        pytest.skip("the gallery needs matplotlib: pip install \"xcorr[plot]\"")
    out = tmp_path_factory.mktemp("gallery")
    result = {}
    for script in SCRIPTS:
        png = out / script.with_suffix(".png").name
        p = subprocess.run([sys.executable, str(script), str(png)], cwd=out, env=_env(),
                           capture_output=True, text=True, timeout=600)
        result[script.name] = (png, None if p.returncode == 0 else p.stdout + p.stderr)
    return result


def test_site_builds_strictly(tmp_path: Path, drawn: dict[str, tuple[Path, str | None]]
                              ) -> None:
    """``mkdocs build --strict``: a broken link, a page missing from the nav, an unresolved
    reference or an API object that does not exist fails it.  The gallery's pictures are the
    ones its scripts have just drawn, not the committed ones."""
    gone = _missing("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python",
                    "pymdownx")
    if gone:
        pytest.skip(f"the docs tools are not installed ({gone}): pip install -e \".[docs]\"")
    docs, site = tmp_path / "docs", tmp_path / "site"
    shutil.copytree(ROOT / "docs", docs)
    for old in (docs / "gallery").glob("*.png"):
        old.unlink()
    for name, (png, error) in drawn.items():
        assert error is None, f"{name} failed:\n{error}"
        shutil.copy(png, docs / "gallery" / png.name)
    p = subprocess.run([sys.executable, "-c", BUILD, str(ROOT / "mkdocs.yml"), str(docs),
                        str(site)], cwd=ROOT, env=_env(), capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    corr = (site / "reference" / "correlation" / "index.html").read_text()
    assert "boundary" in corr and "Examples" in corr  # corr2d's docstring (set at run time)
    report = (site / "benchmarks" / "report" / "index.html").read_text()
    assert "Headline" in report  # bench/results/bench.md, included
    for script in SCRIPTS:
        assert (site / "gallery" / script.with_suffix(".png").name).is_file()


# -- the gallery ---------------------------------------------------------------------------------


def test_every_gallery_script_is_in_the_gallery() -> None:
    page = (GALLERY / "index.md").read_text()
    assert SCRIPTS, "no gallery scripts found"
    for script in SCRIPTS:
        png = script.with_suffix(".png").name
        assert f"]({png})" in page, f"docs/gallery/index.md does not show {png}"
        assert f'--8<-- "docs/gallery/{script.name}"' in page, \
            f"docs/gallery/index.md does not show the source of {script.name}"


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_gallery_script_draws_its_picture(script: Path,
                                          drawn: dict[str, tuple[Path, str | None]]) -> None:
    png, error = drawn[script.name]
    assert error is None, error
    data = png.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000, f"{png} is not a picture"


# -- the README ----------------------------------------------------------------------------------


def test_readme_links_lead_to_files() -> None:
    """Relative links (into docs/) work on GitHub; the site's own links are checked by the
    strict build."""
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    local = [link.split("#")[0] for link in links if "://" not in link]
    assert "docs/index.md" in local
    for link in local:
        assert (ROOT / link).is_file(), f"README.md links to {link}, which does not exist"


def test_readme_names_the_command_to_read_the_docs() -> None:
    assert "`mkdocs serve`" in (ROOT / "README.md").read_text()


# -- docstrings ----------------------------------------------------------------------------------

PUBLIC_MODULES = ("xcorr", "xcorr.vjp", "xcorr.signal", "xcorr.ndimage", "xcorr.testing",
                  "xcorr.reference", "xcorr.cli", "xcorr.benchmark")
_EXTRA = {"xcorr.reference": ("corr2d",), "xcorr.cli": ("main",)}


def _public() -> list[object]:
    found = []
    for name in PUBLIC_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # xcorr.testing without Hypothesis
            found.append(pytest.param(None, id=name, marks=pytest.mark.skip(
                reason=f"{name} cannot be imported here ({exc})")))
            continue
        for attr in getattr(module, "__all__", _EXTRA.get(name, ())):
            obj = getattr(module, attr)
            if inspect.isfunction(obj) or inspect.isclass(obj) or callable(obj) and \
                    hasattr(obj, "__wrapped__"):
                found.append(pytest.param(obj, id=f"{name}.{attr}"))
    return found


def _sections(doc: str) -> set[str]:
    return set(re.findall(r"^(\w+)\n-{3,}$", doc, re.M))


def _raises_itself(func: object) -> bool:
    """Whether the function's own body has a ``raise`` statement."""
    try:
        source = textwrap.dedent(inspect.getsource(inspect.unwrap(func)))
    except (OSError, TypeError):
        return False
    return any(isinstance(node, ast.Raise) for node in ast.walk(ast.parse(source)))


@pytest.mark.parametrize("obj", _public())
def test_public_docstring_has_its_sections(obj: object) -> None:
    """numpydoc sections: Parameters (when it takes any), Returns or Yields (unless it
    returns None), Raises (when its body raises), Examples (always; they run as doctests)."""
    doc = inspect.getdoc(obj) or ""
    have = _sections(doc)
    if inspect.isclass(obj):
        assert "Examples" in have, f"{obj.__qualname__}: no Examples section"
        return
    sig = inspect.signature(obj)
    want = {"Examples"}
    if [p for p in sig.parameters if p not in ("self", "cls")]:
        want.add("Parameters")
    if _raises_itself(obj):
        want.add("Raises")
    missing = want - have
    if sig.return_annotation not in (None, "None") and not have & {"Returns", "Yields"}:
        missing.add("Returns")
    assert not missing, f"{obj.__qualname__}: missing {sorted(missing)} (has {sorted(have)})"


def test_the_public_api_is_audited() -> None:
    ids = {p.id for p in _public()}
    assert {"xcorr.corr2d", "xcorr.learn_kernel", "xcorr.use_backend", "xcorr.vjp.conv2d",
            "xcorr.testing.surface_cases", "xcorr.cli.main", "xcorr.benchmark.run"} <= ids
    callables = {f"xcorr.{n}" for n in xcorr.__all__
                 if callable(getattr(xcorr, n)) and not inspect.ismodule(getattr(xcorr, n))}
    assert callables <= ids, sorted(callables - ids)
