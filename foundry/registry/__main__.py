"""``python -m foundry.registry``: see ``foundry.registry.cli``."""

import sys

from foundry.registry.cli import main

if __name__ == "__main__":
    sys.exit(main())
