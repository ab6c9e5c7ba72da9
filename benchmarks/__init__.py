"""Foundry's benchmarks: run one with ``python -m benchmarks.<name> [--quick]``, all with
``python -m benchmarks.run_all`` (``make bench``); figures go to ``benchmarks/results/``."""
