"""The ``foundry`` console script: one command with a subcommand per operation.

Each subcommand runs an existing ``python -m`` entry point (``foundry train`` is ``python -m jobs.train``)
with the rest of the command line unchanged, so arguments, Hydra overrides and exit codes are those of the
module. The table of commands is ``foundry.console.commands``; parsing, help and dispatch are
``foundry.console.dispatch``. Nothing heavy is imported until a command runs: ``foundry --help`` loads
neither Ray nor torch.
"""

import sys
from typing import NoReturn

from foundry.console.dispatch import main, pick
from foundry.console.entry import exit_when_done

__all__ = ["main", "script"]


def script() -> NoReturn:
    """The installed ``foundry`` executable: ``main``, ended as the command's ``python -m`` module ends. A job
    command (``Command.fast_exit``) ends through ``exit_when_done``, as ``python -m jobs.train`` does: without it,
    ``foundry train`` spent 2-3 s after its work in Ray's atexit hook and the interpreter's teardown."""
    argv = sys.argv[1:]
    picked = pick(argv)
    if picked is not None and picked[0].fast_exit:
        exit_when_done(lambda: main(argv))
    sys.exit(main(argv))
