"""``python -m cluster up|down|status|render [hydra overrides...]``: the local Ray head, with token auth,
and the files that start the same cluster elsewhere.

Overrides are the same Hydra overrides every Foundry entry point takes (``cluster.gcs_port=6390``),
so the cluster and the jobs that run on it are configured from one place. ``render cluster=aws``
(or gcp, kuberay, local) writes the cluster-launcher YAML or the KubeRay manifests
(``cluster/render.py``) and prints where.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from foundry.config import sources as config_sources
from foundry.errors import FoundryError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m cluster", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Start, stop or inspect the local Ray head (token auth always on), or render the "
                    "files that start the cluster on AWS/GCP (`ray up`) or Kubernetes (KubeRay).",
        epilog="examples: python -m cluster up cluster.gcs_port=6390 cluster.dashboard_port=8275 | "
               "python -m cluster render cluster=aws --out cluster.yaml\n" + config_sources.EPILOG,
    )
    p.add_argument("command", choices=("up", "down", "status", "render"))
    config_sources.add_arguments(p)
    p.add_argument("--timeout", type=float, default=90.0,
                   help="seconds `up` waits for the head and its dashboard (default: 90)")
    p.add_argument("--all", action="store_true", dest="all_clusters",
                   help="down: run `ray stop`, stopping EVERY Ray process on this machine "
                        "(default: only the cluster on the configured GCS port)")
    p.add_argument("--out", metavar="FILE_OR_DIR",
                   help="render: a directory (default: outputs/cluster/<kind>/) or one .yaml/.json file")
    p.add_argument("--strict", action="store_true",
                   help="render: exit 2 instead of warning when a value is still a placeholder (example account "
                        "ids, images, projects, buckets); the same as cluster.placeholders=fail")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Imported after parsing so that --help stays fast and works without a valid config.
    from cluster import lifecycle
    try:
        full = config_sources.load(config_sources.from_args(args))
        if args.command == "render":
            return _render(full, args.out, strict=args.strict or None)
        cfg = full.cluster
        if cfg.kind.value != "local":
            print(f"error: `python -m cluster {args.command}` runs the local cluster; cluster={cfg.kind.value} is "
                  f"started from the files of `python -m cluster render cluster={cfg.kind.value}` "
                  "(see README, Clusters)", file=sys.stderr)
            return 2
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


def _render(cfg, out: str | None, strict: bool | None = None) -> int:
    from cluster import placeholders, render
    from foundry.runtime import connection

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", placeholders.PlaceholderWarning)
        written = render.write(cfg, out, strict)
    left = [w for w in caught if issubclass(w.category, placeholders.PlaceholderWarning)]
    for w in caught:
        if w in left:
            print(f"warning: {w.message}", file=sys.stderr)
        else:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    if left:
        print(f"  the cluster cannot start with placeholder values: set them (conf/cluster/{cfg.cluster.kind.value}"
              ".yaml or overrides); --strict makes them an error", file=sys.stderr)
    kind = cfg.cluster.kind.value
    print(f"Rendered cluster={kind} ({cfg.cluster.name}):")
    for path in written:
        print(f"  {path}")
    if kind in ("aws", "gcp"):
        if cfg.cluster.auth.token_source.value == "file" and not connection.token_path(cfg.cluster).exists():
            print(f"  note: `ray up` copies the token from {connection.token_path(cfg.cluster)}, which does not "
                  "exist yet (create it: ray get-auth-token --generate)")
        print(f"Next: ray up {written[0]}")
    elif kind == "kuberay":
        print(f"Next: kubectl apply -f {written[0].parent if len(written) > 1 else written[0]} "
              f"(after creating the Secret {cfg.cluster.auth.secret_name!r}, key auth_token)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
