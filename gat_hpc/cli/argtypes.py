"""argparse value types shared by the commands: one message per kind of bad value."""

from __future__ import annotations

import argparse


def _parse(text, kind):
    """``text`` as an int or a float, or the one message for a value that is not a number."""
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not {'an integer' if kind is int else 'a number'}") from None


def checked(kind, ok, message):
    """An argparse type: ``kind`` (int or float) values for which ``ok(v)``; otherwise
    ``message.format(v=v)``."""

    def parse(text):
        v = _parse(text, kind)
        if not ok(v):
            raise argparse.ArgumentTypeError(message.format(v=v))
        return v

    return parse


#: an integer of at least 1 (counts, sizes, iterations)
positive_int = checked(int, lambda v: v >= 1, "{v} must be at least 1")


def percent(upper, what):
    """A float in (0, upper]; ``what`` completes the message: "give {what}, 0 < PCT <= upper"."""
    return checked(float, lambda v: 0 < v <= upper, f"{{v}} is out of range: give {what}, 0 < PCT <= {upper:g}")
