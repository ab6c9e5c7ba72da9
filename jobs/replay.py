"""Replay the drift monitor's decisions offline: ``python -m jobs.replay SOURCE [options] [overrides]``.

Runs the monitor's own decision path (detectors, the false-alarm budget, the harm estimate, the
retrain controller: ``foundry/drift/replay.py``) over a stream of rows against a registered version,
without Ray and without HTTP, so ``conf/drift`` can be tuned on your own history before retraining is
turned on. Prints one line per decision (alarms, episodes) and a JSON summary as its last line:
rows, episodes, first_episode_row, false_episodes_per_million_clean_rows and detection_delay_rows (with
--onset-row), rows_per_s.

SOURCE is one of:
  --stream PATH          a Parquet or CSV (*.csv) file or folder of rows (the data schema's features; the
                         label column, when present, is delivered as labels; a request_id column is kept)
  --live                 the live rows this model's monitor stored (storage.root), with their stored labels
  --generate SPEC        the bundled churn generator: SCENARIO:ROWS[,SCENARIO:ROWS...] (with --seed)

Examples:
  python -m jobs.replay --generate baseline:1000000 drift.alarm.expected_rows_between_false_episodes=1e6
  python -m jobs.replay --generate baseline:5000,harmful_covariate:5000 --onset-row 5000 --label-delay-rows 10000
  python -m jobs.replay --live --version churn@production drift=light
  python -m jobs.replay --from-version parcels@v20261201-... --stream history.csv   # that version, its config
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from foundry.config import sources as config_sources
from foundry.console.entry import exit_when_done, run_or_exit, setup_logging
from foundry.errors import ConfigError, DataSourceError

CHUNK_ROWS = 50_000


def arguments(argv: list[str] | None) -> argparse.Namespace:
    p = config_sources.parser("python -m jobs.replay", __doc__.split("\n\n")[0])
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.description = __doc__
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--stream", help="Parquet or CSV (*.csv) file or folder of rows")
    source.add_argument("--live", action="store_true", help="the live rows and labels stored for model_name")
    source.add_argument("--generate", help="SCENARIO:ROWS[,SCENARIO:ROWS...] from the bundled churn generator")
    p.add_argument("--seed", type=int, default=0, help="--generate: seed of the first part (+1 per part)")
    p.add_argument("--version", help="MODEL@VERSION or MODEL@ALIAS in storage.registry (default: the one "
                   "--from-version MODEL@REF names, else model_name@promotion.alias)")
    p.add_argument("--version-dir", help="a version folder instead of the registry (as the training job stages it)")
    p.add_argument("--onset-row", type=int, help="rows before it are clean: false episodes and delays are counted")
    p.add_argument("--label-delay-rows", type=int, default=0, help="labels arrive this many rows after their row")
    p.add_argument("--batch-rows", type=int, default=500, help="rows per monitor batch (a sink flush)")
    p.add_argument("--quiet", action="store_true", help="only the JSON summary")
    return p.parse_args(argv)


def _frames(args: argparse.Namespace, cfg):
    """The stream as consecutive DataFrame chunks."""
    if args.generate:
        from foundry import datasets

        for i, part in enumerate(args.generate.split(",")):
            scenario, _, rows = part.partition(":")
            if not rows.isdigit() or int(rows) <= 0:
                raise ConfigError(f"--generate: expected SCENARIO:ROWS, got {part!r}")
            left, seed = int(rows), args.seed + i
            while left > 0:
                n = min(left, CHUNK_ROWS)
                yield datasets.generate("churn", scenario, n, seed=seed)
                seed += 1000
                left -= n
    elif args.stream:
        yield from _stream_frames(args.stream)
    else:
        yield _live_rows(cfg)


def stream_format(path: str) -> str:
    """``csv`` for a .csv file (or .csv.gz) or a folder holding only those, else ``parquet``."""
    p = Path(path)
    names = [f.name for f in p.iterdir() if f.is_file()] if p.is_dir() else [p.name]
    return "csv" if names and all(n.endswith((".csv", ".csv.gz")) for n in names) else "parquet"


def _stream_frames(path: str):
    """A Parquet or CSV file or folder as DataFrame chunks; an unreadable one is a DataSourceError naming it
    (not a traceback)."""
    import pyarrow as pa
    import pyarrow.dataset as pads

    fmt = stream_format(path)
    try:
        for batch in pads.dataset(path, format=fmt).to_batches(batch_size=CHUNK_ROWS):
            yield batch.to_pandas()
    except (OSError, pa.ArrowInvalid) as exc:  # FileNotFoundError is an OSError
        raise DataSourceError(f"--stream {path}: not a readable {fmt} file or folder (Parquet, or CSV named "
                              f"*.csv): {exc}") from exc


def _live_rows(cfg):
    """Every stored live row of model_name (oldest first) with its stored label, if any."""
    from foundry.drift.live_store import LiveStore
    from foundry.serving.feedback import read_feedback

    rows = LiveStore(cfg.storage.root, cfg.model_name).read_recent(sys.maxsize)
    if rows.empty:
        raise DataSourceError(f"--live: no live rows stored for {cfg.model_name} under {cfg.storage.root}")
    labels = read_feedback(cfg.storage.root, cfg.model_name).drop_duplicates("request_id", keep="last")
    rows = rows.drop(columns=[cfg.data.label], errors="ignore")
    return rows.merge(labels[["request_id", "label"]].rename(columns={"label": cfg.data.label}), on="request_id",
                      how="left")


def _version(args: argparse.Namespace, cfg) -> tuple[str, str]:
    """(version folder, version name): ``--version``; else the ref ``--from-version`` names (the version
    whose config is replayed is the one replayed); else the model's ``promotion.alias``."""
    if args.version_dir:
        return args.version_dir, args.version or "local"
    named = args.from_version if args.from_version and "@" in args.from_version else None
    model, _, ref = (args.version or named or f"{cfg.model_name}@{cfg.promotion.alias}").partition("@")
    registry = cfg.storage.layout.open_registry()
    version = registry.get(model, ref or cfg.promotion.alias).version
    return str(registry.fetch(model, version)), version


def replay(args: argparse.Namespace) -> dict:
    from foundry.drift.replay import Replay, replay_frames

    cfg = config_sources.load(config_sources.from_args(args))
    if args.label_delay_rows < 0 or args.batch_rows < 1:
        raise ConfigError("--label-delay-rows must be >= 0 and --batch-rows >= 1")
    version_dir, version = _version(args, cfg)
    say = (lambda _: None) if args.quiet else (lambda line: print(line, flush=True))
    started = time.perf_counter()
    engine = Replay(cfg, version_dir, version, label_delay_rows=args.label_delay_rows, batch_rows=args.batch_rows,
                    onset_row=args.onset_row, say=say)
    frames = _frames(args, cfg)
    summary = replay_frames(engine, frames).to_dict()
    summary["total_seconds"] = round(time.perf_counter() - started, 3)
    print(json.dumps(summary), flush=True)
    return summary


def main(argv: list[str] | None = None) -> int:
    args = arguments(argv)
    setup_logging()
    import logging

    logging.getLogger("alibi_detect").setLevel(logging.WARNING)  # LSDD's per-test lambda lines
    run_or_exit(lambda: replay(args))
    return 0


if __name__ == "__main__":
    exit_when_done(main)
