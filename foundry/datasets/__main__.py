"""Write a bundled data set to a file, e.g. a drifted batch to feed the monitor by hand:

    python -m foundry.datasets --scenario concept_shift --rows 60000 --seed 0 --out /tmp/drift.parquet
"""

from __future__ import annotations

import argparse
import sys

from foundry import storage
from foundry.datasets import GENERATORS, generate, to_bytes
from foundry.errors import FoundryError


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m foundry.datasets", description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="churn", choices=sorted(GENERATORS))
    parser.add_argument("--scenario", default="baseline", choices=GENERATORS["churn"][1])
    parser.add_argument("--rows", type=_positive, default=60_000)
    parser.add_argument("--seed", type=_non_negative, default=0)
    parser.add_argument("--out", required=True, help="file path or pyarrow URI to write")
    parser.add_argument("--format", choices=("parquet", "csv"),
                        help="default: from the --out suffix (.csv -> csv), else parquet")
    args = parser.parse_args(argv)
    fmt = args.format or ("csv" if args.out.lower().endswith(".csv") else "parquet")
    try:
        df = generate(args.generator, args.scenario, args.rows, args.seed)
        fs, inner = storage.resolve(args.out)
        storage.write_bytes_atomic(fs, inner, to_bytes(df, fmt))
    except FoundryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        print(f"error: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    rate = df["churned"].mean() if "churned" in df else float("nan")
    print(f"wrote {len(df)} rows ({fmt}) to {storage.normalize(args.out)}; churn rate {rate:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
