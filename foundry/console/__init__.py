"""The ``foundry`` console script: one command with a subcommand per operation.

Each subcommand runs an existing ``python -m`` entry point (``foundry train`` is ``python -m jobs.train``)
with the rest of the command line unchanged, so arguments, Hydra overrides and exit codes are those of the
module. The table of commands is ``foundry.console.commands``; parsing, help and dispatch are
``foundry.console.dispatch``. Nothing heavy is imported until a command runs: ``foundry --help`` loads
neither Ray nor torch.
"""

from foundry.console.dispatch import main

__all__ = ["main"]
