"""Search hyperparameters with Ray Tune, then register the best trial: ``python -m jobs.tune [overrides]``.

The same job as ``jobs.train`` with a search in place of the single training run: ``tune=asha``
(conf/tune/asha.yaml) unless another ``tune=<name>`` is given. Every trial is a Ray Train run of
the same training loop; ASHA stops the trailing trials between epochs; the best trial is evaluated,
registered (its search results in ``tune_results.json``) and promoted like any trained version.

    python -m jobs.tune                         # conf/tune/asha.yaml
    python -m jobs.tune tune=quick tune.num_samples=6
    ray job submit --working-dir . -- python -m jobs.tune tune=asha

Exit codes as ``jobs.train``: 0 registered, 2 bad config, 3 bad data, 4 registry problem, 1 other.
"""

from __future__ import annotations

import sys

from foundry.console.entry import exit_when_done
from jobs.train import main as train_main

DEFAULT_SEARCH = "tune=asha"


def with_default_search(argv: list[str]) -> list[str]:
    """Add ``tune=asha`` unless the command line already picks a search (or edits ``tune``)."""
    picks = any(a.split("=", 1)[0].lstrip("+~") == "tune" for a in argv[1:])
    return argv if picks else [*argv, DEFAULT_SEARCH]


def main(argv: list[str] | None = None, prog: str = "python -m jobs.tune") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return train_main(with_default_search([prog, *argv])[1:], prog=prog, doc=__doc__)


if __name__ == "__main__":
    exit_when_done(main)
