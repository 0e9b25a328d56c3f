"""Backend registry, array-type detection and the backend setting.

Nothing here imports a framework.  Array types are recognised through
``sys.modules`` (as einops and array-api-compat do): a ``torch.Tensor`` can only
exist once ``torch`` has been imported, so looking it up there is enough, and
JAX tracers count as JAX arrays.  Backend modules are imported on first use.

Thread safety (einops #279/#391): the registry is filled under a lock and only
ever grows; the per-type detection cache is a plain dict whose single-key reads
and writes are atomic; the ``use_backend`` setting is a ``ContextVar``, so
threads and asyncio tasks never see each other's choice.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib
import importlib.metadata
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from types import ModuleType
from typing import Any

BACKENDS = ("numpy", "jax", "torch", "cupy", "dask")

# backend -> (top-level module to import, distribution for the version, pip extra)
_FRAMEWORK = {
    "numpy": ("numpy", "numpy", None),
    "jax": ("jax", "jax", "jax"),
    "torch": ("torch", "torch", "torch"),
    "cupy": ("cupy", None, "cuda12"),
    "dask": ("dask.array", "dask", "dask"),
}


class BackendUnavailableError(RuntimeError):
    """A known backend cannot run here (framework missing, or no device).

    Raised when an operation, ``set_backend`` or ``use_backend`` needs such a backend; the
    message says why (the import error, or CuPy's missing CUDA device) and what to install.
    A ``RuntimeError``, so code that expects any runtime failure catches it too.

    Examples
    --------
    >>> import xcorr
    >>> def on_gpu_if_possible(x, k):
    ...     try:
    ...         return xcorr.corr2d(x, k, backend="cupy")
    ...     except xcorr.BackendUnavailableError:  # no CuPy, or no CUDA device
    ...         return xcorr.corr2d(x, k)
    >>> on_gpu_if_possible([[1.0, 2.0]], [[1.0]]).tolist()
    [[1.0, 2.0]]
    """


# -- type detection --------------------------------------------------------------------------


def _is_jax(t: type) -> bool:
    jax = sys.modules.get("jax")
    if jax is None:
        return False
    if issubclass(t, jax.Array):
        return True
    # Older JAX versions do not register every tracer as a jax.Array (array-api-compat #368).
    core = sys.modules.get("jax.core")
    tracer = getattr(core, "Tracer", None)
    return tracer is not None and issubclass(t, tracer)


def _is_torch(t: type) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and issubclass(t, torch.Tensor)


def _is_cupy(t: type) -> bool:
    cupy = sys.modules.get("cupy")
    return cupy is not None and issubclass(t, cupy.ndarray)


def _is_dask(t: type) -> bool:
    da = sys.modules.get("dask.array")
    return da is not None and issubclass(t, da.Array)


def _is_numpy(t: type) -> bool:
    np = sys.modules.get("numpy")
    return np is not None and issubclass(t, (np.ndarray, np.generic))


_CHECKS = (("torch", _is_torch), ("jax", _is_jax), ("cupy", _is_cupy), ("dask", _is_dask),
           ("numpy", _is_numpy))
_type_cache: dict[type, str | None] = {}


def array_backend(obj: Any) -> str | None:
    """Name of the framework that owns ``obj``, or None for lists, scalars and the like."""
    t = type(obj)
    try:
        return _type_cache[t]
    except KeyError:
        pass
    name = next((n for n, check in _CHECKS if check(t)), None)
    # Caching is safe: a type of framework F cannot exist before F is imported.
    _type_cache[t] = name
    return name


def jax_tracer(obj: Any) -> bool:
    """Whether ``obj`` is a JAX tracer (inside ``jit``, ``grad`` or ``vmap``: no values);
    False where JAX is not loaded."""
    tracer = getattr(sys.modules.get("jax.core"), "Tracer", None)
    return tracer is not None and isinstance(obj, tracer)


def torch_compiling() -> bool:
    """Whether torch.compile's Dynamo is tracing the caller (False where torch is not loaded,
    and on torch 2.2, which has no ``torch.compiler.is_compiling``)."""
    compiler = getattr(sys.modules.get("torch"), "compiler", None)
    is_compiling = getattr(compiler, "is_compiling", None)
    return is_compiling is not None and is_compiling()


# -- registry ---------------------------------------------------------------------------------

_lock = threading.Lock()
_modules: dict[str, ModuleType] = {}


def check_name(name: Any) -> str:
    """Return ``name`` if it is a known backend, else raise ``ValueError`` listing them."""
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


def install_hint(name: str) -> str:
    extra = _FRAMEWORK[name][2]
    return f'pip install "xcorr[{extra}]"' if extra else "pip install numpy"


def load(name: str) -> ModuleType:
    """The backend module for ``name``, checked usable; raises a helpful error otherwise."""
    mod = _modules.get(check_name(name))
    if mod is None:
        with _lock:
            mod = _modules.get(name)
            if mod is None:
                try:
                    mod = importlib.import_module(f"xcorr.backends._{name}")
                except ImportError as exc:
                    raise BackendUnavailableError(
                        f"backend {name!r} needs {_FRAMEWORK[name][0]}, which failed to import "
                        f"({exc}); install it with: {install_hint(name)}") from exc
                _modules[name] = mod
    reason = mod.unavailable_reason()
    if reason:
        raise BackendUnavailableError(f"backend {name!r} cannot run here: {reason}")
    return mod


def info(name: str) -> dict[str, Any]:
    """Installed?, version, devices and why unusable, for one backend (imports its framework)."""
    top, dist, _ = _FRAMEWORK[name]
    out: dict[str, Any] = {"installed": False, "available": False, "version": None,
                           "devices": [], "reason": None}
    try:
        mod = load(name)
    except BackendUnavailableError as exc:
        out["reason"] = str(exc)
        out["installed"] = top.split(".")[0] in sys.modules
        mod = _modules.get(name)
    else:
        out["installed"] = out["available"] = True
    if mod is not None:
        out["version"] = mod.version()
        out["devices"] = mod.devices() if out["available"] else []
    elif dist is not None:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out["version"] = importlib.metadata.version(dist)
    return out


def available() -> tuple[str, ...]:
    names = []
    for name in BACKENDS:
        try:
            load(name)
        except BackendUnavailableError:
            continue
        names.append(name)
    return tuple(names)


# -- the backend setting ----------------------------------------------------------------------

_context: contextvars.ContextVar[str | None] = contextvars.ContextVar("xcorr_backend",
                                                                      default=None)
_default = "numpy"


def _from_env() -> None:
    global _default
    value = os.environ.get("XCORR_BACKEND", "").strip()
    if not value:
        return
    if value in BACKENDS:
        _default = value
    else:
        warnings.warn(f"XCORR_BACKEND={value!r} is not a known backend "
                      f"({', '.join(BACKENDS)}); ignoring it and using 'numpy'",
                      RuntimeWarning, stacklevel=2)


_from_env()


def get_backend() -> str:
    """The backend used for NumPy arrays, lists and scalars (context, then process default).

    Inputs of another framework (torch tensors, JAX, CuPy or Dask arrays) go to their own
    backend whatever this says; ``backend=`` overrides both.

    Returns
    -------
    str
        The innermost ``use_backend`` block's name, else the ``set_backend`` default (first
        read from ``XCORR_BACKEND`` at import), else ``"numpy"``.

    Examples
    --------
    >>> import xcorr
    >>> xcorr.get_backend()
    'numpy'
    >>> with xcorr.use_backend("numpy"):
    ...     xcorr.get_backend()
    'numpy'
    """
    return _context.get() or _default


def set_backend(name: str) -> None:
    """Set the process-wide default backend (checked usable now).

    The default applies to NumPy arrays, lists and scalars in every thread, except inside a
    ``use_backend`` block.  The environment variable ``XCORR_BACKEND`` sets it at import.

    Parameters
    ----------
    name : {"numpy", "jax", "torch", "cupy", "dask"}
        The backend; its framework is imported now.

    Raises
    ------
    ValueError
        An unknown ``name``.
    BackendUnavailableError
        The backend cannot run here (its framework is not installed, or CuPy has no CUDA
        device); the default is left unchanged.

    Examples
    --------
    >>> import numpy as np, xcorr
    >>> xcorr.set_backend("numpy")
    >>> type(xcorr.corr2d([[1.0, 2.0]], [[1.0]])).__name__
    'ndarray'
    >>> xcorr.set_backend("tensorflow")
    Traceback (most recent call last):
    ...
    ValueError: unknown backend 'tensorflow'; choose one of numpy, jax, torch, cupy, dask
    """
    global _default
    load(name)
    _default = name


@contextlib.contextmanager
def use_backend(name: str) -> Iterator[str]:
    """Use ``name`` for NumPy arrays, lists and scalars inside the ``with`` block only.

    The setting is a ``ContextVar``: other threads and asyncio tasks keep their own, and
    blocks nest (the innermost wins).

    Parameters
    ----------
    name : {"numpy", "jax", "torch", "cupy", "dask"}
        The backend; its framework is imported when the block is entered.

    Yields
    ------
    str
        ``name``.

    Raises
    ------
    ValueError
        An unknown ``name``.
    BackendUnavailableError
        The backend cannot run here (raised on entering the block).

    Examples
    --------
    >>> import numpy as np, xcorr
    >>> with xcorr.use_backend("torch"):
    ...     type(xcorr.corr2d(np.ones((3, 3)), np.ones((2, 2)))).__name__
    'Tensor'
    >>> with xcorr.use_backend("numpy") as name:
    ...     name, xcorr.get_backend()
    ('numpy', 'numpy')
    """
    load(name)
    token = _context.set(name)
    try:
        yield name
    finally:
        _context.reset(token)


def resolve(x: Any, k: Any, backend: str | None) -> ModuleType:
    """Pick the backend module for ``x`` and ``k``; see :func:`resolve_all`."""
    return resolve_all((x, k), backend)


def resolve_all(objs: tuple[Any, ...], backend: str | None,
                names: tuple[str, ...] = ("x", "k")) -> ModuleType:
    """Pick the backend module: explicit flag, else the inputs' framework, else the setting.

    ``objs`` are an operation's array arguments (None entries are skipped), ``names`` their
    parameter names for the error message when two frameworks meet.
    """
    if backend is not None:
        return load(backend)
    found: dict[str, str] = {}
    for obj, name in zip(objs, names, strict=False):
        fw = array_backend(obj) if obj is not None else None
        if fw not in (None, "numpy"):
            found.setdefault(fw, name)
    if len(found) > 1:
        (a, na), (b, nb) = sorted(found.items())[:2]
        both = " and ".join(n for n in names if n in (na, nb)) if len(found) == 2 else "inputs"
        raise TypeError(f"{both} belong to different frameworks ({a} and {b}); convert one of "
                        f"them, or pass backend= to choose where the computation runs")
    return load(next(iter(found)) if found else get_backend())
