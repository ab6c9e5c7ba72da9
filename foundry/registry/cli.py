"""``python -m foundry.registry list|show|promote|gc``: inspect and operate the registry by hand.

The root is ``--root URI`` or, like every other entry point, the composed Hydra config: trailing
``key=value`` arguments are Hydra overrides (``storage.root=s3://bucket/foundry``), so an operator
reaches the same registry the training jobs write to without spelling out its path.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from foundry.config import sources as config_sources
from foundry.console.entry import run_or_exit
from foundry.errors import RegistryError

# Hydra override syntax: key=value, +key=value, ++key=value, ~key[=value].
_OVERRIDE = re.compile(r"^(\+{1,2}|~)?[A-Za-z_][\w.@/-]*(=|$)")
_VALUE_OPTIONS = ("--root", "--alias", "--reason", "--older-than", "--config-dir", "--config-name", "--from-version")
_MAX_METRICS = 4


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m foundry.registry",
        description="Inspect and operate the model registry. Trailing key=value arguments are Hydra "
                    "overrides used to find the registry root (not allowed together with --root).",
        epilog="examples:\n  python -m foundry.registry list\n"
               "  python -m foundry.registry show churn production storage.root=/data/foundry\n"
               "  python -m foundry.registry promote churn v20250101-120000-000-a1b2c3 --reason 'rollback'\n"
               + config_sources.EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--root", help="registry root URI or path (default: storage.registry of the Hydra config)")
    config_sources.add_arguments(p, overrides=False)
    sub = p.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="models, or the versions of one model")
    ls.add_argument("model", nargs="?")
    show = sub.add_parser("show", help="a version's manifest and the aliases pointing at it, as JSON")
    show.add_argument("model")
    show.add_argument("ref", help="version id, alias or 'latest'")
    promote = sub.add_parser("promote", help="point an alias at a version")
    promote.add_argument("model")
    promote.add_argument("version", help="version id (or alias / 'latest')")
    promote.add_argument("--alias", default="production")
    promote.add_argument("--reason", default="")
    promote.add_argument("--rollout", choices=["direct", "shadow", "canary"], default="direct",
                         help="direct (default): move the alias now (the monitor's post-rollout guard still "
                         "watches it); shadow|canary: move the candidate alias instead, and the model's drift "
                         "monitor runs the roll-out on live traffic (promotion.candidate_alias, with "
                         "promotion.rollout set the same way for the monitor)")
    promote.add_argument("--candidate-alias", default="candidate")
    gc = sub.add_parser("gc", help="delete version dirs a crashed writer left without a manifest")
    gc.add_argument("model")
    gc.add_argument("--older-than", type=float, default=3600.0, metavar="SECONDS",
                    help="only dirs whose newest file is at least this old (default: 3600)")
    return p


def split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
    """Separate Hydra overrides from CLI arguments. Values of options (``--reason 'a=b'``) stay
    with their option; model and alias names cannot contain '=', so positionals are unambiguous."""
    args, overrides = [], []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in _VALUE_OPTIONS and i + 1 < len(argv):
            args += [token, argv[i + 1]]
            i += 2
            continue
        if not token.startswith("-") and ("=" in token or token.startswith("~")) and _OVERRIDE.match(token):
            overrides.append(token)
        else:
            args.append(token)
        i += 1
    return args, overrides


def _registry(args: argparse.Namespace, overrides: list[str]):
    from foundry.registry.store import Registry

    root = args.root
    if root is None:
        root = config_sources.load(config_sources.from_args(args, overrides)).storage.layout.registry
    return Registry(root)


def _metrics_text(metadata: dict) -> str:
    metrics = {k: v for k, v in (metadata.get("metrics") or {}).items() if k != "rows"}
    primary = metadata.get("primary_metric")
    keys = ([primary] if primary in metrics else []) + [k for k in metrics if k != primary]
    parts = []
    for key in keys[:_MAX_METRICS]:
        value = metrics[key]
        parts.append(f"{key}={value:.4f}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts) or "-"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def _by_version(aliases: dict[str, dict]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, record in aliases.items():
        out.setdefault(record["version"], []).append(name)
    return out


def cmd_list(reg, model: str | None) -> None:
    if model is None:
        rows = []
        for name in reg.models():
            versions = reg.versions(name)
            aliases = ", ".join(f"{a}={r['version']}" for a, r in reg.aliases(name).items()) or "-"
            rows.append([name, str(len(versions)), versions[-1].version if versions else "-", aliases])
        print(_table(rows, ["MODEL", "VERSIONS", "LATEST", "ALIASES"]) if rows else f"no models in {reg.root}")
        return
    versions = reg.versions(model)
    if not versions:
        reg.get(model, "latest")  # raises with the right message (unknown model vs. no versions)
    pointing = _by_version(reg.aliases(model))
    rows = [[mv.version, mv.created_at[:19].replace("T", " "), ",".join(pointing.get(mv.version, [])) or "-",
             _metrics_text(mv.metadata)] for mv in versions]
    print(_table(rows, ["VERSION", "CREATED (UTC)", "ALIASES", "METRICS"]))


def cmd_show(reg, model: str, ref: str) -> None:
    mv = reg.get(model, ref)
    aliases = {a: r for a, r in reg.aliases(model).items() if r["version"] == mv.version}
    print(json.dumps({"uri": mv.uri, "manifest": mv.manifest(), "aliases": aliases}, indent=2, sort_keys=True))


def cmd_promote(reg, model: str, version: str, alias: str, reason: str) -> None:
    before = reg.alias(model, alias)
    reg.set_alias(model, alias, version, reason=reason or "promoted by hand (python -m foundry.registry)")
    after = reg.alias(model, alias)
    print(f"{model}:{alias} {before or '(unset)'} -> {after}")


def cmd_gc(reg, model: str, older_than: float) -> None:
    removed = reg.gc_incomplete(model, older_than_s=older_than)
    print("\n".join(f"removed {model}/{v}" for v in removed) if removed else "nothing to remove")


def _run(args: argparse.Namespace, overrides: list[str]) -> None:
    try:
        reg = _registry(args, overrides)
        if args.command == "list":
            cmd_list(reg, args.model)
        elif args.command == "show":
            cmd_show(reg, args.model, args.ref)
        elif args.command == "promote":
            alias = args.alias if args.rollout == "direct" else args.candidate_alias
            if alias != args.alias:
                print(f"{args.rollout} roll-out: moving {alias}; the drift monitor decides whether it takes {args.alias}")
            cmd_promote(reg, args.model, args.version, alias, args.reason)
        else:
            cmd_gc(reg, args.model, args.older_than)
    except OSError as exc:  # unreachable bucket, permissions: a clear line, not a traceback
        raise RegistryError(f"storage error: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    raw, overrides = split_overrides(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(raw)
    if args.root is not None and overrides:
        parser.error(f"--root and Hydra overrides ({' '.join(overrides)}) are exclusive")
    run_or_exit(lambda: _run(args, overrides))
    return 0
