"""The registry's contract: complete-or-invisible versions, verified fetches, atomic aliases.

No Ray: the registry is plain storage, and its guarantees must hold for any process that writes
to it (training jobs, the CLI, several jobs at once).
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from foundry.errors import AliasConflictError, RegistryError, TamperedArtifactError
from foundry.registry import MANIFEST, ModelVersion, Registry, is_version_id
from foundry.registry import store as store_module
from foundry.registry.cli import split_overrides
from foundry.registry.names import new_version_id

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL = "churn"


def make_artifacts(path: Path, seed: int = 0, size: int = 4096) -> Path:
    rng = random.Random(seed)
    (path / "nested" / "deeper").mkdir(parents=True, exist_ok=True)
    (path / "model.safetensors").write_bytes(rng.randbytes(size))
    (path / "preprocessor.json").write_text(json.dumps({"seed": seed}))
    (path / "nested" / "deeper" / "config.yaml").write_text(f"seed: {seed}\n")
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def reg(tmp_path) -> Registry:
    return Registry(str(tmp_path / "registry"))


@pytest.fixture
def art(tmp_path) -> Path:
    return make_artifacts(tmp_path / "art")


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# ---- register / list / get / fetch ----------------------------------------------------------------


def test_round_trip_stores_files_checksums_and_metadata(reg, art):
    metadata = {"metrics": {"auc": 0.875, "rows": 1000}, "primary_metric": "auc", "lineage": {"parent": None}}
    mv = reg.register(MODEL, art, metadata)

    assert isinstance(mv, ModelVersion) and is_version_id(mv.version)
    assert mv.metrics == {"auc": 0.875, "rows": 1000}
    assert set(mv.files) == {"model.safetensors", "preprocessor.json", "nested/deeper/config.yaml"}
    for rel, rec in mv.files.items():
        assert rec == {"sha256": sha256(art / rel), "size": (art / rel).stat().st_size}

    manifest = json.loads((Path(reg.root) / MODEL / "versions" / mv.version / MANIFEST).read_text())
    assert manifest["model"] == MODEL and manifest["version"] == mv.version
    assert manifest["metadata"] == metadata and manifest["files"] == mv.files
    assert datetime.fromisoformat(manifest["created_at"]).utcoffset() == timedelta(0)

    assert reg.models() == [MODEL]
    assert reg.versions(MODEL) == [mv]
    assert reg.get(MODEL, mv.version).metadata == metadata
    assert reg.get(MODEL, "latest") == mv

    fetched = reg.fetch(MODEL, mv.version)
    assert fetched == Path(reg.root) / MODEL / "versions" / mv.version  # local root: verified in place
    assert {k: v for k, v in tree(fetched).items() if k != MANIFEST} == tree(art)

    copied = reg.fetch(MODEL, "latest", dest=str(Path(reg.root).parent / "copy"))
    assert {k: v for k, v in tree(copied).items() if k != MANIFEST} == tree(art)


def test_metadata_values_from_training_code_are_stored_as_plain_json(reg, art):
    import numpy as np
    mv = reg.register(MODEL, art, {"metrics": {"auc": np.float32(0.5), "rows": np.int64(3)}, "src": art})
    assert reg.get(MODEL, mv.version).metadata == {"metrics": {"auc": 0.5, "rows": 3}, "src": str(art)}
    with pytest.raises(RegistryError, match="JSON"):
        reg.register(MODEL, art, {"bad": object()})
    assert len(reg.versions(MODEL)) == 1  # rejected before anything was written


def test_ids_sort_by_time_and_latest_is_newest(reg, art):
    made = []
    for i in range(3):
        made.append(reg.register(MODEL, art, {"i": i}).version)
        time.sleep(0.002)  # ids have millisecond resolution
    assert [mv.version for mv in reg.versions(MODEL)] == made == sorted(made)
    assert reg.get(MODEL, "latest").version == made[-1]

    base = datetime(2025, 1, 1, tzinfo=timezone.utc)
    ids = [new_version_id(base + timedelta(milliseconds=ms)) for ms in (0, 1, 999, 1000, 86_400_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)


def test_register_refuses_empty_or_missing_dir(reg, tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(RegistryError, match="no files"):
        reg.register(MODEL, tmp_path / "empty", {})
    with pytest.raises(RegistryError, match="not a directory"):
        reg.register(MODEL, tmp_path / "missing", {})
    assert reg.models() == []


def test_register_never_overwrites_an_existing_version(reg, art, monkeypatch):
    first = reg.register(MODEL, art, {"n": 1})
    fresh = new_version_id()
    ids = iter([first.version, fresh])
    monkeypatch.setattr(store_module, "new_version_id", lambda now=None: next(ids))
    second = reg.register(MODEL, art, {"n": 2})
    assert second.version == fresh
    assert reg.get(MODEL, first.version).metadata == {"n": 1}


def test_failed_register_removes_its_partial_dir(reg, art, monkeypatch):
    reg.register(MODEL, art, {})
    real_upload = store_module.integrity.upload
    calls = []

    def flaky_upload(fs, local, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_upload(fs, local, dst)

    monkeypatch.setattr(store_module.integrity, "upload", flaky_upload)
    with pytest.raises(OSError, match="disk full"):
        reg.register(MODEL, art, {})
    assert len(reg.versions(MODEL)) == 1
    assert len(list((Path(reg.root) / MODEL / "versions").iterdir())) == 1


def test_unknown_refs_name_model_ref_and_what_exists(reg, art):
    mv = reg.register(MODEL, art, {})
    reg.set_alias(MODEL, "production", mv.version)
    with pytest.raises(RegistryError) as exc:
        reg.get(MODEL, "staging")
    assert MODEL in str(exc.value) and "staging" in str(exc.value)
    assert mv.version in str(exc.value) and "production" in str(exc.value)
    with pytest.raises(RegistryError, match="unknown model 'other'.*churn"):
        reg.get("other", "latest")
    with pytest.raises(RegistryError, match=new_version_id(datetime(2020, 1, 1, tzinfo=timezone.utc))[:10]):
        reg.get(MODEL, new_version_id(datetime(2020, 1, 1, tzinfo=timezone.utc)))


# ---- aliases --------------------------------------------------------------------------------------


def test_aliases_move_and_record_previous(reg, art):
    v1 = reg.register(MODEL, art, {}).version
    v2 = reg.register(MODEL, art, {}).version
    assert reg.alias(MODEL, "production") is None

    reg.set_alias(MODEL, "production", v1, reason="first")
    reg.set_alias(MODEL, "production", v2, reason="better auc")
    record = reg.aliases(MODEL)["production"]
    assert (record["version"], record["previous"], record["reason"]) == (v2, v1, "better auc")
    datetime.fromisoformat(record["updated_at"])
    assert reg.get(MODEL, "production").version == v2

    reg.set_alias(MODEL, "production", v2, reason="re-affirmed")  # same version keeps the rollback target
    assert reg.aliases(MODEL)["production"]["previous"] == v1

    reg.set_alias(MODEL, "staging", "latest")
    assert reg.aliases(MODEL) == {"production": reg.aliases(MODEL)["production"],
                                  "staging": reg.aliases(MODEL)["staging"]}
    assert reg.alias(MODEL, "staging") == v2

    history = reg.alias_history(MODEL, "production")
    assert [(e["version"], e["previous"]) for e in history] == [(v1, None), (v2, v1), (v2, v1)]
    assert len(reg.alias_history(MODEL)) == 4


def test_alias_to_missing_or_incomplete_version_is_rejected(reg, art):
    v1 = reg.register(MODEL, art, {}).version
    reg.set_alias(MODEL, "production", v1)
    ghost = new_version_id()
    with pytest.raises(RegistryError, match=ghost):
        reg.set_alias(MODEL, "production", ghost)
    partial = Path(reg.root) / MODEL / "versions" / ghost
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"half")
    with pytest.raises(RegistryError):
        reg.set_alias(MODEL, "production", ghost)
    assert reg.alias(MODEL, "production") == v1


@pytest.mark.parametrize("bad", ["../x", "..", ".", "a/b", "", "-flag", ".hidden", "a..b", "x" * 129, "a b"])
def test_bad_names_are_rejected(reg, art, bad):
    with pytest.raises(RegistryError, match="invalid"):
        reg.register(bad, art, {})
    with pytest.raises(RegistryError, match="invalid"):
        reg.versions(bad)
    mv = reg.register(MODEL, art, {})
    with pytest.raises(RegistryError, match="invalid"):
        reg.set_alias(MODEL, bad, mv.version)
    with pytest.raises(RegistryError):
        reg.get(MODEL, bad)
    assert not (Path(reg.root).parent / "x").exists()


@pytest.mark.parametrize("reserved", ["latest", "v20250101-120000-000-abcdef"])
def test_aliases_that_would_shadow_refs_are_rejected(reg, art, reserved):
    mv = reg.register(MODEL, art, {})
    with pytest.raises(RegistryError, match="reserved"):
        reg.set_alias(MODEL, reserved, mv.version)


# ---- tampering ------------------------------------------------------------------------------------


def test_flipped_byte_is_detected_and_named(reg, art):
    mv = reg.register(MODEL, art, {})
    reg.set_alias(MODEL, "production", mv.version)
    stored = Path(reg.root) / MODEL / "versions" / mv.version / "model.safetensors"
    data = bytearray(stored.read_bytes())
    data[100] ^= 0x01
    stored.write_bytes(bytes(data))
    with pytest.raises(TamperedArtifactError, match="model.safetensors"):
        reg.fetch(MODEL, "production")
    with pytest.raises(TamperedArtifactError, match="model.safetensors"):
        reg.fetch(MODEL, "production", dest=str(Path(reg.root).parent / "copy"))
    assert not (Path(reg.root).parent / "copy" / "model.safetensors").exists()


def test_deleted_truncated_or_planted_files_are_detected(reg, art):
    mv = reg.register(MODEL, art, {})
    vdir = Path(reg.root) / MODEL / "versions" / mv.version
    (vdir / "nested" / "deeper" / "config.yaml").unlink()
    with pytest.raises(TamperedArtifactError, match="nested/deeper/config.yaml"):
        reg.fetch(MODEL, mv.version)

    mv2 = reg.register(MODEL, art, {})
    vdir2 = Path(reg.root) / MODEL / "versions" / mv2.version
    (vdir2 / "preprocessor.json").write_text("{}")
    with pytest.raises(TamperedArtifactError, match="preprocessor.json"):
        reg.fetch(MODEL, mv2.version)

    mv3 = reg.register(MODEL, art, {})
    (Path(reg.root) / MODEL / "versions" / mv3.version / "evil.pkl").write_bytes(b"x")
    with pytest.raises(TamperedArtifactError, match="evil.pkl"):
        reg.fetch(MODEL, mv3.version)


def test_edited_manifest_is_detected(reg, art):
    mv = reg.register(MODEL, art, {})
    manifest = Path(reg.root) / MODEL / "versions" / mv.version / MANIFEST
    doc = json.loads(manifest.read_text())
    doc["files"]["../../outside"] = {"sha256": "0" * 64, "size": 1}
    manifest.write_text(json.dumps(doc))
    with pytest.raises(TamperedArtifactError, match="unsafe"):
        reg.get(MODEL, mv.version)
    manifest.write_text("{not json")
    with pytest.raises(TamperedArtifactError, match="manifest"):
        reg.versions(MODEL)


def test_remote_root_fetches_into_a_verified_copy(tmp_path, art, monkeypatch):
    """A non-local pyarrow filesystem takes the download path that s3:// and gs:// roots use."""
    # pyarrow's in-memory filesystem stands in for a bucket (present in every pyarrow the project allows).
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    fs = pafs._MockFileSystem()
    reg = Registry("bucket/registry", filesystem=fs)
    mv = reg.register(MODEL, art, {"metrics": {"auc": 0.7}})
    reg.set_alias(MODEL, "production", mv.version)
    assert reg.root == "bucket/registry" and reg.models() == [MODEL]

    got = reg.fetch(MODEL, "production")
    assert got == tmp_path / "cache" / "foundry" / "registry" / MODEL / mv.version
    assert {k: v for k, v in tree(got).items() if k != MANIFEST} == tree(art)
    assert json.loads((got / MANIFEST).read_text())["version"] == mv.version
    assert reg.fetch(MODEL, mv.version) == got  # cached copy re-verified, not downloaded again

    (got / "preprocessor.json").write_text('{"seed": 9}')  # a damaged cache heals from the store
    assert (reg.fetch(MODEL, mv.version) / "preprocessor.json").read_text() == '{"seed": 0}'

    stored = f"bucket/registry/{MODEL}/versions/{mv.version}/model.safetensors"
    with fs.open_input_stream(stored) as f:
        data = bytearray(f.read())
    data[0] ^= 0xFF
    with fs.open_output_stream(stored) as f:
        f.write(bytes(data))
    dest = tmp_path / "fresh"
    with pytest.raises(TamperedArtifactError, match="model.safetensors"):
        reg.fetch(MODEL, mv.version, dest=str(dest))
    assert not (dest / "model.safetensors").exists()


# ---- concurrency and crashes ----------------------------------------------------------------------


def _concurrent_writer(root: str, src: str, idx: int, barrier) -> None:
    reg = Registry(root)
    barrier.wait(30)  # all ten processes are up: release them together
    reg.register(MODEL, src, {"writer": idx})


def _alias_mover(root: str, barrier, stop, seed: int) -> None:
    reg, rng = Registry(root), random.Random(seed)
    barrier.wait(30)
    moves = 0
    while not stop.is_set() or moves < 10:
        target = rng.choice(reg.versions(MODEL)).version
        reg.set_alias(MODEL, "production", target, reason=f"mover {seed} move {moves}")
        moves += 1


def _promoter(root: str, version: str, expected: str, barrier, results) -> None:
    reg = Registry(root)
    barrier.wait(30)
    try:
        reg.set_alias(MODEL, "production", version, reason="promoter", expected=expected)
        results.put(("won", version))
    except AliasConflictError as exc:
        results.put(("lost", str(exc)))


def test_an_alias_move_against_a_stale_read_is_refused(reg, tmp_path):
    v1, v2, v3 = (reg.register(MODEL, make_artifacts(tmp_path / f"a{i}", seed=i)).version for i in range(3))
    reg.set_alias(MODEL, "production", v1, expected=None)  # "not set yet" is an expectation too
    reg.set_alias(MODEL, "production", v2, expected=v1)
    with pytest.raises(AliasConflictError, match=f"points at {v2}, not {v1}"):
        reg.set_alias(MODEL, "production", v3, expected=v1)  # decided against v1, which is gone
    with pytest.raises(AliasConflictError, match=r"points at .*, not \(unset\)"):
        reg.set_alias(MODEL, "production", v3, expected=None)
    assert reg.alias(MODEL, "production") == v2
    assert [r["version"] for r in reg.alias_history(MODEL, "production")] == [v1, v2]


def test_two_concurrent_promotions_from_the_same_champion_one_wins(tmp_path):
    """Two retrains both decided "beats v1" and both moved the alias: the later write silently won."""
    root = str(tmp_path / "registry")
    reg = Registry(root)
    versions = [reg.register(MODEL, make_artifacts(tmp_path / f"c{i}", seed=i)).version for i in range(7)]
    reg.set_alias(MODEL, "production", versions[0])
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_promoter, args=(root, v, versions[0], barrier, results)) for v in versions[1:]]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    outcomes = [results.get(timeout=10) for _ in procs]
    winners = [v for kind, v in outcomes if kind == "won"]
    assert len(winners) == 1, outcomes
    assert reg.alias(MODEL, "production") == winners[0]
    assert all("another writer moved it" in m for kind, m in outcomes if kind == "lost")


def test_concurrent_writers_and_alias_movers(tmp_path):
    root = str(tmp_path / "registry")
    reg = Registry(root)
    seed_version = reg.register(MODEL, make_artifacts(tmp_path / "seed", seed=99), {"writer": "seed"})
    reg.set_alias(MODEL, "production", seed_version.version)
    srcs = [str(make_artifacts(tmp_path / f"src{i}", seed=i, size=512 * 1024)) for i in range(8)]

    ctx = mp.get_context("spawn")
    barrier, stop = ctx.Barrier(10), ctx.Event()
    writers = [ctx.Process(target=_concurrent_writer, args=(root, src, i, barrier)) for i, src in enumerate(srcs)]
    movers = [ctx.Process(target=_alias_mover, args=(root, barrier, stop, s)) for s in range(2)]

    alias_file = Path(root) / MODEL / "aliases" / "production.json"
    problems, reads = [], [0]
    done = threading.Event()

    def poll_alias():
        while not done.is_set():
            try:
                version = json.loads(alias_file.read_bytes())["version"]
                reg.get(MODEL, version)
                assert reg.alias(MODEL, "production") is not None
                reads[0] += 1
            except Exception as exc:  # any failure is a broken guarantee
                problems.append(repr(exc))

    reader = threading.Thread(target=poll_alias)
    reader.start()
    try:
        for p in writers + movers:
            p.start()
        for p in writers:
            p.join(120)
        stop.set()
        for p in movers:
            p.join(60)
    finally:
        done.set()
        reader.join(10)
        for p in writers + movers:
            if p.is_alive():
                p.kill()
    assert [p.exitcode for p in writers + movers] == [0] * 10
    assert problems == [] and reads[0] > 0

    versions = reg.versions(MODEL)
    new = [mv for mv in versions if mv.metadata["writer"] != "seed"]
    assert len(new) == 8 and len({mv.version for mv in new}) == 8
    assert sorted(mv.metadata["writer"] for mv in new) == list(range(8))
    for mv in new:
        fetched = reg.fetch(MODEL, mv.version)
        assert (fetched / "model.safetensors").read_bytes() == (Path(srcs[mv.metadata["writer"]])
                                                                 / "model.safetensors").read_bytes()
    assert sorted(p.name for p in (Path(root) / MODEL / "versions").iterdir()) == [mv.version for mv in versions]
    assert reg.alias(MODEL, "production") in {mv.version for mv in versions}
    history = reg.alias_history(MODEL, "production")
    assert len(history) >= 21 and all(e["version"] in {mv.version for mv in versions} for e in history)


CRASH_BEFORE_MANIFEST = textwrap.dedent("""
    import os, sys
    from foundry.registry import store

    def die(self, mv):  # the process is killed after copying, right before the commit point
        os._exit(1)

    store.Registry._write_manifest = die
    store.Registry(sys.argv[1]).register("churn", sys.argv[2], {"doomed": True})
""")


def test_crash_before_manifest_leaves_nothing_visible(tmp_path, art):
    root = str(tmp_path / "registry")
    reg = Registry(root)
    v1 = reg.register(MODEL, art, {}).version
    reg.set_alias(MODEL, "production", v1)
    before_versions, before_aliases = reg.versions(MODEL), reg.aliases(MODEL)

    proc = subprocess.run([sys.executable, "-c", CRASH_BEFORE_MANIFEST, root, str(art)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr

    assert reg.versions(MODEL) == before_versions
    assert reg.aliases(MODEL) == before_aliases
    assert reg.get(MODEL, "latest").version == v1
    partial = [p for p in (Path(root) / MODEL / "versions").iterdir() if p.name != v1]
    assert len(partial) == 1 and not (partial[0] / MANIFEST).exists()
    assert tree(partial[0]) == tree(art)  # the artifacts made it, the version did not
    with pytest.raises(RegistryError):
        reg.get(MODEL, partial[0].name)

    assert reg.gc_incomplete(MODEL) == []  # fresh: could be a live writer
    assert reg.gc_incomplete(MODEL, older_than_s=0) == [partial[0].name]
    assert not partial[0].exists()
    assert reg.versions(MODEL) == before_versions


CRASH_BEFORE_ALIAS = textwrap.dedent("""
    import os, sys
    from foundry.registry import store

    def die(self, *args, **kwargs):  # the version is complete; the process dies before the alias moves
        os._exit(1)

    store.Registry.set_alias = die
    reg = store.Registry(sys.argv[1])
    version = reg.register("churn", sys.argv[2], {"doomed": False}).version
    reg.set_alias("churn", "production", version)
""")


def test_crash_between_register_and_alias_keeps_the_alias_on_the_previous_version(tmp_path, art):
    root = str(tmp_path / "registry")
    reg = Registry(root)
    v1 = reg.register(MODEL, art, {}).version
    reg.set_alias(MODEL, "production", v1)
    history = reg.alias_history(MODEL, "production")

    proc = subprocess.run([sys.executable, "-c", CRASH_BEFORE_ALIAS, root, str(make_artifacts(tmp_path / "v2", 2))],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr

    assert reg.alias(MODEL, "production") == v1 and reg.alias_history(MODEL, "production") == history
    served = tree(reg.fetch(MODEL, "production"))
    served.pop(MANIFEST)
    assert served == tree(art)
    v2 = reg.get(MODEL, "latest").version  # complete, listed, just not promoted
    assert v2 != v1 and [mv.version for mv in reg.versions(MODEL)] == [v1, v2]


# A writer that publishes versions and moves the alias in a loop, as fast as it can.
PUBLISH_FOREVER = textwrap.dedent("""
    import sys
    from foundry.registry import store

    reg = store.Registry(sys.argv[1])
    print("ready", flush=True)
    while True:
        version = reg.register("churn", sys.argv[2], {"writer": "chaos"}).version
        reg.set_alias("churn", "production", version, reason="chaos")
""")


def test_sigkilled_writers_never_expose_a_partial_version_to_readers(tmp_path):
    """SIGKILL a publishing writer at random moments (mid-upload, mid-manifest, between manifest and
    alias), many times, while a reader resolves and fetches ``production`` in a loop: every read
    is a complete, checksum-verified version; only invisible directories are left, and gc removes them."""
    root = str(tmp_path / "registry")
    reg = Registry(root)
    art = make_artifacts(tmp_path / "art", seed=3, size=4 * 1024 * 1024)  # uploads take a while
    expected = tree(art)
    reg.set_alias(MODEL, "production", reg.register(MODEL, art, {}).version)
    stop, reads, errors = threading.Event(), [], []

    def reader() -> None:
        while not stop.is_set():
            try:
                version = reg.alias(MODEL, "production")
                files = tree(reg.fetch(MODEL, version))
                files.pop(MANIFEST)
                assert files == expected, f"{version}: different files"
                reads.append(version)
            except Exception as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    rng = random.Random(7)
    kills = 12
    try:
        for _ in range(kills):
            writer = subprocess.Popen([sys.executable, "-c", PUBLISH_FOREVER, root, str(art)], cwd=REPO_ROOT,
                                      stdout=subprocess.PIPE, text=True)
            assert writer.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.4))
            writer.kill()  # SIGKILL: no handler, no clean-up
            writer.wait(timeout=30)
    finally:
        stop.set()
        thread.join(timeout=60)

    assert not errors, errors[:3]
    assert len(reads) > kills and len(set(reads)) > 1  # the alias moved while readers read
    complete = {mv.version for mv in reg.versions(MODEL)}
    assert reg.alias(MODEL, "production") in complete
    for move in reg.alias_history(MODEL, "production"):
        assert move["version"] in complete
    dirs = {p.name for p in (Path(root) / MODEL / "versions").iterdir()}
    leftovers = dirs - complete
    print(f"{kills} writers killed: {len(complete)} complete versions, {len(leftovers)} partial, {len(reads)} reads")
    assert len(leftovers) <= kills  # at most one partial directory per killed writer
    assert sorted(reg.gc_incomplete(MODEL, older_than_s=0)) == sorted(leftovers)
    assert {mv.version for mv in reg.versions(MODEL)} == complete


def test_gc_measures_age_from_the_newest_file(reg, art):
    mv = reg.register(MODEL, art, {})
    partial = Path(reg.root) / MODEL / "versions" / new_version_id()
    (partial / "sub").mkdir(parents=True)
    old = time.time() - 7200
    for p in (partial / "sub", partial):
        os.utime(p, (old, old))
    (partial / "sub" / "fresh.bin").write_bytes(b"still copying")
    assert reg.gc_incomplete(MODEL, older_than_s=3600) == []
    os.utime(partial / "sub" / "fresh.bin", (old, old))
    os.utime(partial / "sub", (old, old))
    os.utime(partial, (old, old))
    assert reg.gc_incomplete(MODEL, older_than_s=3600) == [partial.name]
    assert [v.version for v in reg.versions(MODEL)] == [mv.version]


# ---- CLI ------------------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "foundry.registry", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)


def test_cli_list_show_promote_gc(tmp_path, art):
    root = str(tmp_path / "storage" / "registry")
    reg = Registry(root)
    v1 = reg.register(MODEL, art, {"metrics": {"auc": 0.81, "accuracy": 0.7, "rows": 5},
                                   "primary_metric": "auc"}).version
    v2 = reg.register(MODEL, art, {"metrics": {"auc": 0.9}}).version
    reg.set_alias(MODEL, "production", v2, reason="trained")

    out = cli("--root", root, "list")
    assert out.returncode == 0, out.stderr
    assert MODEL in out.stdout and f"production={v2}" in out.stdout

    out = cli("--root", root, "list", MODEL)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[0] == "VERSION" and v1 in lines[1] and v2 in lines[2]
    assert "auc=0.8100 accuracy=0.7000" in lines[1] and "rows" not in lines[1] and "production" in lines[2]

    out = cli("--root", root, "show", MODEL, "production")
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert shown["manifest"]["version"] == v2 and shown["aliases"]["production"]["reason"] == "trained"

    out = cli("--root", root, "promote", MODEL, v1, "--reason", "rollback: auc=0.9 regressed")
    assert out.returncode == 0, out.stderr
    assert f"{v2} -> {v1}" in out.stdout
    record = reg.aliases(MODEL)["production"]
    assert (record["version"], record["previous"], record["reason"]) == (v1, v2, "rollback: auc=0.9 regressed")

    out = cli("--root", root, "gc", MODEL, "--older-than", "0")
    assert out.returncode == 0 and "nothing to remove" in out.stdout

    # The root from the Hydra config: storage.root=<dir> -> <dir>/registry.
    out = cli("list", MODEL, f"storage.root={tmp_path / 'storage'}")
    assert out.returncode == 0, out.stderr
    assert v1 in out.stdout and v2 in out.stdout


@pytest.mark.parametrize("args, message", [
    (["list", "../x"], "invalid model name '../x'"),
    (["show", MODEL, "nope"], "has no version or alias 'nope'"),
    (["promote", MODEL, "v20200101-000000-000-abcdef"], "v20200101-000000-000-abcdef"),
    (["promote", MODEL, "latest", "--alias", "../prod"], "invalid alias name"),
])
def test_cli_errors_exit_nonzero_with_one_line(tmp_path, art, args, message):
    root = str(tmp_path / "registry")
    Registry(root).register(MODEL, art, {})
    out = cli("--root", root, *args)
    assert out.returncode == RegistryError.exit_code
    assert out.stderr.startswith("error: ") and message in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_separates_hydra_overrides_from_arguments():
    args, overrides = split_overrides(["list", "churn", "storage.root=/x", "--reason", "a=b", "+foo.bar=1",
                                       "~trigger"])
    assert args == ["list", "churn", "--reason", "a=b"]
    assert overrides == ["storage.root=/x", "+foo.bar=1", "~trigger"]
