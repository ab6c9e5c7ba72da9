"""``python -m foundry.demo [overrides]`` (what ``make demo`` runs)."""

import sys

from foundry.cli import run_or_exit
from foundry.demo import main

sys.exit(run_or_exit(lambda: main(sys.argv[1:])))
