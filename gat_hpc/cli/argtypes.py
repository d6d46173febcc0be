"""argparse value types shared by the commands: one message per kind of bad value."""

from __future__ import annotations

import argparse


def positive_int(text):
    """An integer of at least 1 (counts, sizes, iterations)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{v} must be at least 1")
    return v


def percent(upper, what):
    """A float in (0, upper]; ``what`` completes the message: "give {what}, 0 < PCT <= upper"."""

    def parse(text):
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if not 0 < v <= upper:
            raise argparse.ArgumentTypeError(f"{v} is out of range: give {what}, 0 < PCT <= {upper:g}")
        return v

    return parse
