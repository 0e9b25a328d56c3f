"""A Griffe extension for xcorr's docstrings, loaded by mkdocstrings (see mkdocs.yml).

xcorr's docstrings are numpydoc, read in a terminal and by Sphinx-style tools, so they use two
things Markdown does not have:

* reStructuredText roles, ``:func:`name``` / ``:class:`~pkg.Name``` and the like: each becomes
  an optional cross-reference, a link where the object is documented on the site and plain
  code otherwise (a role naming, say, ``numpy.pad`` must not break the strict build);
* reStructuredText's literal-block marker (a paragraph ending in ``::``) and citations
  (``[1]_``, ``.. [1] text``), which become a plain colon and ``[1]``;
* docstrings assigned at run time (``corr2d.__doc__ = ... + _COMMON_DOC``, which shares the
  parameter text of ``corr2d`` and ``convolve2d``), which static analysis does not see: an
  object that has none is imported and its ``__doc__`` taken.  xcorr imports no framework, so
  this costs nothing.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|data|attr|obj|exc):`(?P<target>[^`]+)`")
# RST -> Markdown: "text::" before a literal block, "[1]_" citations and ".. [1]" targets.
_RST = ((re.compile(r"(?<=\S)::$", re.M), ":"), (re.compile(r"^[ \t]*::$\n?", re.M), ""),
        (re.compile(r"\[(\w+)\]_"), r"[\1]"), (re.compile(r"^\.\. \[(\w+)\]", re.M), r"[\1]"))


class XcorrDocstrings(griffe.Extension):
    """Runtime docstrings where static analysis found none; RST markup made Markdown."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is None and obj.is_function:
            doc = _runtime_doc(obj)
            if doc:
                obj.docstring = griffe.Docstring(doc, parent=obj)

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        # After the whole package is loaded, so that a role can name any of its objects.
        for obj in _walk(pkg):
            if obj.docstring is not None:
                text = _ROLE.sub(lambda m, obj=obj: _ref(m["target"], obj), obj.docstring.value)
                for pattern, replacement in _RST:
                    text = pattern.sub(replacement, text)
                obj.docstring.value = text

    # Griffe 1's name of the same event (griffe 2 calls on_package); running twice is harmless.
    on_package_loaded = on_package


def _walk(obj: griffe.Object) -> Iterator[griffe.Object]:
    yield obj
    for member in obj.members.values():
        if not member.is_alias:
            yield from _walk(member)


def _runtime_doc(obj: griffe.Object) -> str | None:
    try:
        module = importlib.import_module(obj.module.path)
    except ImportError:
        return None
    target: Any = module
    for part in obj.path[len(obj.module.path) + 1:].split("."):
        target = getattr(target, part, None)
    doc = getattr(target, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else None


def _ref(target: str, obj: griffe.Object) -> str:
    """``<autoref optional>``: a link if the target is documented, else plain code."""
    short = target.startswith("~")
    target = target.lstrip("~")
    shown = target.rsplit(".", 1)[-1] if short else target
    module = obj.module.path
    if target.startswith("."):  # relative to the package of obj's module
        package = module.rsplit(".", 1)[0] if not obj.module.is_init_module else module
        ident = package + target
    elif target.split(".")[0] in ("xcorr", "numpy", "scipy", "jax", "torch", "cupy", "dask"):
        ident = target
    else:  # a name in the nearest enclosing scope that has it: obj's class, then its module
        scope = obj if obj.is_module or obj.is_class else obj.parent
        while not scope.is_module and target.split(".")[0] not in scope.members:
            scope = scope.parent
        ident = f"{scope.path}.{target}"
    return f'<autoref identifier="{ident}" optional><code>{shown}</code></autoref>'
