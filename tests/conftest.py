"""Shared fixtures: every behaviour test runs once per backend; absent ones skip with a reason."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

import xcorr
from xcorr._dispatch import BackendUnavailableError, load

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


def to_np(a: Any) -> np.ndarray:
    """Explicit conversion of any backend's result to NumPy, for comparisons in tests."""
    if hasattr(a, "compute") and not isinstance(a, np.ndarray):  # dask
        a = a.compute()
    if hasattr(a, "detach"):  # torch
        a = a.detach().cpu()
        if a.dtype.is_floating_point and a.element_size() < 4:
            a = a.float()
        return a.numpy()
    if hasattr(a, "get") and type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)
