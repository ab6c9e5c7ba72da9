"""``python -m cluster up|down|status [hydra overrides...]``: the local Ray head, with token auth.

Overrides are the same Hydra overrides every Foundry entry point takes (``cluster.gcs_port=6390``),
so the cluster and the jobs that run on it are configured from one place.
"""

from __future__ import annotations

import argparse
import sys

from foundry.errors import FoundryError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cluster",
        description="Start, stop or inspect the local Ray head (token auth always on).",
        epilog="example: python -m cluster up cluster.gcs_port=6390 cluster.dashboard_port=8275",
    )
    p.add_argument("command", choices=("up", "down", "status"))
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. cluster.head_num_cpus=2")
    p.add_argument("--timeout", type=float, default=90.0,
                   help="seconds `up` waits for the head and its dashboard (default: 90)")
    p.add_argument("--all", action="store_true", dest="all_clusters",
                   help="down: run `ray stop`, stopping EVERY Ray process on this machine "
                        "(default: only the cluster on the configured GCS port)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Imported after parsing so that --help stays fast and works without a valid config.
    from cluster import lifecycle
    from foundry import config

    try:
        cfg = config.load(args.overrides).cluster
        if args.command == "up":
            lifecycle.up(cfg, timeout=args.timeout)
            return 0
        if args.command == "down":
            lifecycle.down(cfg, all_clusters=args.all_clusters)
            return 0
        return 0 if lifecycle.status(cfg) else 1
    except FoundryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
