"""Rules the test suite itself enforces (pyproject's ``[tool.pytest.ini_options]``)."""

from __future__ import annotations

import warnings

import pytest

from xcorr import _auto


def test_a_warning_raised_at_a_line_of_xcorr_is_an_error() -> None:
    """Issue 16, defect 8: warnings located in xcorr's modules fail the test that meets them."""
    with pytest.raises(RuntimeWarning, match="method='fft' spreads them"):
        _auto.warn_fft_nonfinite(stacklevel=1)  # located in xcorr/_auto.py
    with pytest.raises(DeprecationWarning, match="old"):  # a framework's, at xcorr's line
        warnings.warn_explicit("old API", DeprecationWarning, "xcorr/backends/_torch.py", 1,
                               module="xcorr.backends._torch")


def test_an_expected_warning_is_only_recorded() -> None:
    with pytest.warns(RuntimeWarning, match="method='fft' spreads them"):
        _auto.warn_fft_nonfinite(stacklevel=1)


def test_warnings_located_elsewhere_keep_their_default_action() -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.warn_explicit("not ours", UserWarning, "elsewhere.py", 1, module="xcorrlike")
    assert [str(w.message) for w in seen] == ["not ours"]
