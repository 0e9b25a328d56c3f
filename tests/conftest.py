"""Shared fixtures: every behaviour test runs once per backend; absent ones skip with a reason."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import pytest

import xcorr
from xcorr._compat import jax_x64
from xcorr._dispatch import BackendUnavailableError, load
from xcorr._interop import host_copy

try:  # the property suite's profiles (registered in xcorr.testing when it exists)
    from hypothesis import settings

    settings.register_profile("ci", max_examples=40, deadline=None, print_blob=True)
    settings.register_profile("thorough", max_examples=10_000, deadline=None, print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # pragma: no cover - hypothesis is in the test extra
    pass


def unavailable(name: str) -> str | None:
    """Why backend ``name`` cannot run here, or None."""
    try:
        load(name)
    except BackendUnavailableError as exc:
        return str(exc)
    return None


@pytest.fixture(params=xcorr.BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """Each backend name in turn; skips, saying why, where the backend cannot run."""
    reason = unavailable(request.param)
    if reason:
        pytest.skip(f"{request.param}: {reason}")
    return request.param


to_np = host_copy  # explicit conversion of any backend's result, for comparisons in tests


@contextlib.contextmanager
def x64(backend: str, enabled: bool = True) -> Iterator[None]:
    """JAX's 64-bit types inside the block only, on the JAX backend (the user's switch, set
    through ``xcorr._compat.jax_x64`` and restored after: never flipped for good)."""
    if backend != "jax":
        yield
        return
    with jax_x64(enabled):
        yield
