"""Print what CI installs for xcorr, read from pyproject.toml (needs Python 3.11+: tomllib).

``python .ci/requirements.py`` prints the requirements of ``xcorr[all]`` plus the ``cuda12``
extra (CuPy's "no CUDA device" path is tested too), one per line, as pyproject.toml states
them.  ``--floors`` prints a pip constraints file instead: each of those packages pinned to
the lowest version pyproject.toml allows (``name>=X`` becomes ``name==X``), so that installing
with it proves the floors true.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import tomllib

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
EXTRAS = ("all", "cuda12")
_REQ = re.compile(r"^\s*(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?P<extras>\[[^\]]*\])?"
                  r"\s*(?P<spec>[^;]*)")


def requirements(project: dict, extras: tuple[str, ...] = EXTRAS) -> list[str]:
    """The requirements of the project and of ``extras``, with the project's own extras
    (``xcorr[jax,torch]``) expanded."""
    name = project["name"]
    optional = project.get("optional-dependencies", {})
    out, todo, seen = list(project.get("dependencies", [])), list(extras), set()
    while todo:
        extra = todo.pop(0)
        if extra in seen:
            continue
        seen.add(extra)
        for req in optional[extra]:
            m = _REQ.match(req)
            if m and m["name"] == name:
                todo += [e.strip() for e in m["extras"].strip("[]").split(",")]
            elif req not in out:
                out.append(req)
    return out


def floors(reqs: list[str]) -> list[str]:
    """``name==X`` for each ``name>=X`` (constraints take no extras)."""
    pins = []
    for req in reqs:
        m = _REQ.match(req)
        floor = re.search(r">=\s*([^,\s]+)", m["spec"]) if m else None
        if floor is None:
            sys.exit(f"{req!r} in pyproject.toml has no floor (>=): every requirement needs one")
        pins.append(f"{m['name']}=={floor[1]}")
    return pins


def main(argv: list[str]) -> int:
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    reqs = requirements(project)
    print("\n".join(floors(reqs) if argv == ["--floors"] else reqs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
