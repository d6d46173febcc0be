"""``python -m gat_hpc``: the gat-hpc command."""

import sys

from gat_hpc.cli.main import main

sys.exit(main())
