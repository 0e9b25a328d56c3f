"""The registry of suites: ``xcorr bench --suite NAME`` picks from ``SUITES``.

To benchmark another operation, write a module here with a :class:`~xcorr.benchmark.suite.Suite`
subclass and add its instance below (the order is the order of the run and of the report).
"""

from __future__ import annotations

from ..suite import Suite
from .conv2d import CONV2D, POOL2D
from .corr2d import SUITE as CORR2D
from .ncc import SUITE as NCC
from .surface import SUITE as SURFACE

SUITES: dict[str, Suite] = {s.name: s for s in (CORR2D, SURFACE, CONV2D, POOL2D, NCC)}
