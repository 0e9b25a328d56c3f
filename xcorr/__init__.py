"""xcorr: 2-D cross-correlation on whichever array framework you already use.

``import xcorr`` imports no framework: backends load on first use.
"""

from __future__ import annotations

from typing import Any

from . import reference, vjp
from ._conv import conv2d
from ._corr import convolve2d, corr2d
from ._dispatch import (
    BACKENDS,
    BackendUnavailableError,
    get_backend,
    set_backend,
    use_backend,
)
from ._ncc import local_ncc, match_template
from ._pool import pool2d
from .train import LearnResult, learn_kernel

__version__ = "0.1.0"
__all__ = [
    "BACKENDS",
    "BackendUnavailableError",
    "LearnResult",
    "available_backends",
    "backend_info",
    "conv2d",
    "convolve2d",
    "corr2d",
    "get_backend",
    "learn_kernel",
    "local_ncc",
    "match_template",
    "reference",
    "pool2d",
    "set_backend",
    "use_backend",
    "vjp",
]


def available_backends() -> tuple[str, ...]:
    """Names of the backends that can run here (installed, and for CuPy with a CUDA device).

    Returns
    -------
    tuple of str
        In the order of ``BACKENDS``; NumPy is always there.  Imports each installed
        framework to check it can run; a backend that cannot run is left out
        (:func:`backend_info` says why).

    Examples
    --------
    >>> import xcorr
    >>> "numpy" in xcorr.available_backends()
    True
    >>> set(xcorr.available_backends()) <= set(xcorr.BACKENDS)
    True
    """
    from ._dispatch import available

    return available()


def backend_info() -> dict[str, dict[str, Any]]:
    """Per backend: ``installed``, ``available``, ``version``, ``devices`` and ``reason``.

    Imports each installed framework to ask it (unlike ``import xcorr``).

    Returns
    -------
    dict
        ``{name: info}`` for every name in ``BACKENDS``, where ``info`` holds ``installed``
        (bool), ``available`` (bool: it can run here), ``version`` (str or None), ``devices``
        (list of str, empty when unavailable) and ``reason`` (why it cannot run, with what to
        install; None when it can).  A framework that fails to import is reported there,
        not raised.

    Examples
    --------
    >>> import xcorr
    >>> info = xcorr.backend_info()
    >>> info["numpy"]["available"], info["numpy"]["devices"], info["numpy"]["reason"]
    (True, ['cpu'], None)
    >>> sorted(info) == sorted(xcorr.BACKENDS)
    True
    """
    from ._dispatch import info

    return {name: info(name) for name in BACKENDS}
