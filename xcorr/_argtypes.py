"""Argument types shared by the ``xcorr`` command and ``xcorr bench``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def non_negative_int(text: str) -> int:
    """An argparse type: an integer >= 0 (a seed).

    >>> non_negative_int("0")
    0
    """
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {text}")
    return value


non_negative_int.__name__ = "int"  # argparse names the type in its messages


def positive(kind: type) -> Callable[[str], Any]:
    """An argparse type: a number of ``kind`` (int or float) that must be > 0 and finite.

    >>> positive(int)("3"), positive(float)("0.5")
    (3, 0.5)
    """
    def convert(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            noun = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
        if not value > 0 or value == float("inf"):
            what = "a positive integer" if kind is int else "a positive finite number"
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    convert.__name__ = kind.__name__  # argparse names the type in its messages
    return convert
