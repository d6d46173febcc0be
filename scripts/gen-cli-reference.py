#!/usr/bin/env python3
"""Regenerate docs/reference.md from gat-hpc's argument parser (gat_hpc.cli.reference).

    .venv/bin/python scripts/gen-cli-reference.py            # rewrite docs/reference.md
    .venv/bin/python scripts/gen-cli-reference.py --check    # exit 1 if it is out of date
    .venv/bin/python scripts/gen-cli-reference.py --stdout   # print it instead

Run it after adding or changing a command or an option; tests/test_docs.py fails until the
committed file matches.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gat_hpc.cli.reference import main  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--stdout" in argv:
        argv = [a for a in argv if a != "--stdout"]
    elif "--check" not in argv:
        argv = ["--write", *argv]
    sys.exit(main(argv))
