"""``python3 -m weaseldb``: the CLI (see weaseldb.cli)."""

import sys

from .cli import main

sys.exit(main(prog="python3 -m weaseldb"))
