"""The self-healing history of a model: ``python -m foundry.ops.events [overrides] [--kind K] [--json]``.

Reads the events the drift monitor wrote (``foundry.drift.events``): drift detected, jobs submitted
and finished, promotions and rejections, roll-outs, re-bases. Storage and model come from the
same Hydra config as everything else (``storage.root``, ``model_name``).
"""

from __future__ import annotations

import argparse
import json
import sys

from foundry.config import sources as config_sources
from foundry.console.entry import run_or_exit


def _parser() -> argparse.ArgumentParser:
    p = config_sources.parser("python -m foundry.ops.events", __doc__.split("\n\n")[0])
    p.add_argument("--kind", action="append", help="only these kinds (repeatable), e.g. --kind drift_detected")
    p.add_argument("--last", type=int, default=0, help="only the last N events")
    p.add_argument("--json", action="store_true", help="one JSON object per line (every field)")
    return p


def format_event(e: dict) -> str:
    episode = (e.get("episode") or "").rsplit("-", 1)[-1]  # ids end in -e<N>; the message names the rest
    return f"{e['at'][:23]}  {e['kind']:<24} {episode:<4} {e['message']}"


def run(args: argparse.Namespace) -> int:
    from foundry.drift.events import read_events

    cfg = config_sources.load(config_sources.from_args(args))
    events = read_events(cfg.storage.root, cfg.model_name, kinds=set(args.kind) if args.kind else None)
    if args.last:
        events = events[-args.last:]
    if not events:
        print(f"no events for {cfg.model_name} under {cfg.storage.layout.monitoring} (is `python -m jobs.monitor` running?)")
        return 0
    for e in events:
        print(json.dumps(e, default=str) if args.json else format_event(e))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_or_exit(lambda: run(_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
