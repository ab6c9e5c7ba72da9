"""The training job refuses bad data (exit code 3, every problem named, nothing written to the
registry) and survives the loss of a worker (it resumes from the last epoch's checkpoint).

Training itself (Ray Data -> Ray Train with 2 workers -> registry, through the Jobs API) is covered
by ``test_pipeline.py``, whose job trains the same way, and by the retrain job of
``test_self_healing.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from foundry import config
from foundry.datasets import generate
from foundry.train.loop import STATE_FILE
from foundry.train.workflow import HISTORY_FILE
from tests.conftest import REPO_ROOT

QUICK = ["+experiment=quick", "data.source.synthetic.rows=12000", "trainer.epochs=5"]


def _write_bad_data(tmp_path) -> str:
    df = generate("churn", "baseline", 3000, seed=5)
    df["monthly_charges"] = df["monthly_charges"].astype(object)
    df.loc[:9, "monthly_charges"] = "twelve"
    df.loc[20:24, "age"] = 150
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    return str(path)


def test_bad_data_fails_the_job_and_writes_nothing(ray_cluster, tmp_path):
    bad = _write_bad_data(tmp_path)
    model_name = f"bad-{uuid.uuid4().hex[:6]}"
    proc = subprocess.run(
        [sys.executable, "-m", "jobs.train", *ray_cluster.overrides, f"model_name={model_name}", *QUICK,
         f"ray.address={ray_cluster.address}", f"data.source.path={bad}", "data.source.format=csv",
         "data.source.synthetic=null"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "monthly_charges" in proc.stderr and "not numeric" in proc.stderr
    assert "age" in proc.stderr and "above the allowed maximum" in proc.stderr
    registry = config.load(ray_cluster.overrides).storage.layout.open_registry()
    assert model_name not in registry.models()


def _malformed_files(tmp_path) -> dict[str, tuple[str, list[str]]]:
    """Parquet files broken the ways real exports break: name -> (path, words the error must contain)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = generate("churn", "baseline", 2000, seed=5)
    files: dict[str, tuple[str, list[str]]] = {}

    def write(name: str, df, words: list[str]) -> Path:
        path = tmp_path / f"{name}.parquet"
        df.to_parquet(path, index=False)
        files[name] = (str(path), words)
        return path

    good = write("truncated", base, ["truncated.parquet"])
    good.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    write("missing_label", base.drop(columns=["churned"]), ["churned", "missing label column"])
    write("all_null", base.assign(satisfaction=None), ["satisfaction", "all values are null"])
    write("zero_rows", base.iloc[:0], ["empty data set"])
    table = pa.Table.from_pandas(base, preserve_index=False)
    table = table.set_column(table.schema.get_field_index("age"), "age", pa.array([True] * len(base)))
    pq.write_table(table, tmp_path / "wrong_type.parquet")
    files["wrong_type"] = (str(tmp_path / "wrong_type.parquet"), ["age", "wrong type"])
    # Good rows, but too few held out to draw a drift reference sample from: a model no monitor could
    # watch used to be registered (and served) anyway.
    write("tiny_held_out", base, ["drift reference sample too small", "drift.enabled=false"])
    return files


EXTRA = {"tiny_held_out": ["data.split.train=0.98", "data.split.val=0.01", "data.split.test=0.01"]}


def test_every_malformed_parquet_file_fails_the_job_naming_the_problem(ray_cluster, tmp_path):
    """Truncated file, missing label, all-null column, zero rows, wrong type, too few held-out rows for a
    drift reference sample: each training job exits non-zero with the column (or file) named, and
    nothing of the model reaches the registry."""
    jobs = {}
    for name, (path, words) in _malformed_files(tmp_path).items():
        model_name = f"bad-{name.replace('_', '-')}-{uuid.uuid4().hex[:4]}"
        argv = [sys.executable, "-m", "jobs.train", *ray_cluster.overrides, f"model_name={model_name}", *QUICK,
                f"ray.address={ray_cluster.address}", f"data.source.path={path}", "data.source.format=parquet",
                "data.source.synthetic=null", "data.validation.min_rows=100", *EXTRA.get(name, [])]
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        jobs[name] = (proc, model_name, words)
    registry = config.load(ray_cluster.overrides).storage.layout.open_registry()
    for name, (proc, model_name, words) in jobs.items():
        _, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 3, f"{name}: exit {proc.returncode}\n{stderr[-3000:]}"
        message = stderr[stderr.rfind("error:"):]
        assert "error:" in stderr and all(w in message for w in words), f"{name}: {stderr[-3000:]}"
        assert model_name not in registry.models(), name


# Epochs of ~4 s on 2 cores (longer than Ray Train's 2 s poll that commits a checkpoint), so the kill
# can land inside an epoch whose predecessor is committed.
EPOCHS = 4
TRAIN_ROWS = 38400  # 80% of the 48,000 rows
RESUME = ["+experiment=quick", f"data.source.synthetic.rows={TRAIN_ROWS * 5 // 4}", "trainer.num_workers=2",
          f"trainer.epochs={EPOCHS}", "trainer.batch_size=16", "trainer.early_stopping_patience=100",
          "trainer.checkpoint_every_s=0", "drift.enabled=false"]


def _epochs_done(checkpoints: Path, model_name: str) -> tuple[int, int] | None:
    """(epochs in the checkpoint Ray Train has committed, epochs in the newest checkpoint written), or None.

    A worker uploads its checkpoint in ``ray.train.report``; the controller commits it (its snapshot
    file) when it next polls the workers, every 2 s. Only a committed checkpoint is resumed from."""
    runs = list(checkpoints.glob(f"{model_name}-*"))
    if len(runs) != 1:
        return None
    try:
        snapshot = json.loads((runs[0] / "checkpoint_manager_snapshot.json").read_text())
        committed = snapshot["latest_checkpoint_result"]["checkpoint_dir_name"]
        committed_epochs = json.loads((runs[0] / committed / STATE_FILE).read_text())["epoch"]
        written = max(json.loads(p.read_text())["epoch"] for p in runs[0].glob(f"checkpoint_*/{STATE_FILE}"))
    except (OSError, ValueError, KeyError, TypeError):  # not there yet, or being written
        return None
    return committed_epochs, written


def _train_workers() -> list[dict]:
    from ray.util.state import list_actors

    return [a for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000, raise_on_missing_output=False)
            if "TrainWorker" in (a.get("class_name") or "") and a.get("pid")]


def test_a_killed_training_worker_resumes_from_the_last_checkpoint(ray_cluster, tmp_path):
    """SIGKILL one Ray Train worker process mid-epoch: the worker group restarts (FailureConfig), every
    worker loads the last epoch's checkpoint, and the job finishes all epochs and registers the version;
    the work lost is the killed epoch's unfinished part, never a finished epoch."""
    model_name = f"resume-{uuid.uuid4().hex[:6]}"
    cfg = config.load(ray_cluster.overrides)
    checkpoints = Path(cfg.storage.layout.checkpoints)
    job = subprocess.Popen(
        [sys.executable, "-m", "jobs.train", *ray_cluster.overrides, f"model_name={model_name}", *RESUME,
         f"ray.address={ray_cluster.address}"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    killed = None
    try:
        deadline = time.monotonic() + 300
        while job.poll() is None and time.monotonic() < deadline:
            done = _epochs_done(checkpoints, model_name)
            # Mid-epoch, with the last finished epoch committed: the kill must cost only the epoch in progress.
            if done is not None and done[0] == done[1] >= 1:
                workers = _train_workers()
                if len(workers) == 2:
                    victim = max(workers, key=lambda a: a["pid"])
                    os.kill(victim["pid"], signal.SIGKILL)
                    killed = {"pid": victim["pid"], "epochs_done": done[0]}
                    break
            time.sleep(0.2)
        output, _ = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
    assert killed is not None, "no training worker to kill (did an epoch finish?)"
    assert killed["epochs_done"] < EPOCHS, f"killed after the last epoch: {killed}"
    assert job.returncode == 0, output[-4000:]
    registry = cfg.storage.layout.open_registry()
    (version,) = registry.versions(model_name)
    training = version.metadata["training"]
    # One restart, from the checkpoint committed at the time of the kill (or the next one, if the epoch in
    # progress finished before the group noticed): no finished epoch was trained twice.
    (resumed_at,) = training["resumed_at_epochs"]
    assert resumed_at in (killed["epochs_done"], killed["epochs_done"] + 1), (killed, training)
    # What the restarted workers hold is the checkpoint's weights and optimizer state (Adam's moments and
    # step), digested at the moment of the restore: not a fresh model that only starts at the right epoch.
    (resume,) = training["resumes"]
    assert resume["at_epoch"] == resumed_at and resume["restored"] == resume["checkpoint"], resume
    assert training["epochs_run"] == EPOCHS
    # Where the epochs ran is recorded: a CPU worker, so trainer.amp (on) did not apply (CUDA only).
    assert (training["device"], training["amp"]) == ("cpu", False), training
    history = json.loads((registry.fetch(model_name, version.version) / HISTORY_FILE).read_text())
    assert [int(h["epoch"]) for h in history] == list(range(EPOCHS))
    print(f"killed pid {killed['pid']} after {killed['epochs_done']} committed epochs; resumed at epoch "
          f"{resumed_at}; epoch seconds: {[round(TRAIN_ROWS / h['rows_per_s'], 1) for h in history]}")
    assert "resumed from the checkpoint" in output
