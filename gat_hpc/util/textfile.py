"""Reading an input text file with one clear error for every way it can fail."""

from __future__ import annotations

import os

from gat_hpc.errors import InputError


def read_text(path, expected):
    """The file's text (undecodable bytes replaced); InputError naming ``path`` otherwise.

    ``expected`` says what the file should be, for the message when ``path`` is a folder
    (e.g. "a MATPOWER .m file").
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected {expected}") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror}") from None
