"""Version shims for the oldest framework releases that ``pyproject.toml`` allows.

Only code that runs *around* the library uses these (the test suite, the benchmark): the
library itself never changes a framework's settings.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any


def jax_x64(enabled: bool = True) -> AbstractContextManager[Any]:
    """A context manager that sets JAX's 64-bit mode inside its block only, then restores it.

    ``jax.enable_x64(flag)`` (JAX 0.7 and later) where it exists, else the older
    ``jax.experimental.enable_x64()`` / ``disable_x64()`` (JAX 0.4.30 to 0.6, which have no
    ``jax.enable_x64``).  Imports JAX: call it only where JAX is wanted.

    Parameters
    ----------
    enabled : bool
        The value of ``jax_enable_x64`` inside the block.

    Returns
    -------
    context manager

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from xcorr._compat import jax_x64
    >>> with jax_x64(True):
    ...     str(jnp.asarray(1.0).dtype)
    'float64'
    """
    import jax

    scoped = getattr(jax, "enable_x64", None)  # older JAX: absent (a removed name raises)
    if scoped is not None:
        return scoped(enabled)
    from jax import experimental

    return experimental.enable_x64() if enabled else experimental.disable_x64()
