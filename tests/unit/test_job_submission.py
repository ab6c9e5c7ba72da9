"""Job submission helpers against a stand-in for the Jobs API client (the real API is covered in integration)."""

from __future__ import annotations

import pytest

import foundry.runtime.jobs as js


class _Status:
    def __init__(self, value: str, terminal: bool):
        self.value = value
        self._terminal = terminal

    def is_terminal(self) -> bool:
        return self._terminal


class _GrowingLog:
    """A job whose log grows across polls, cut mid-line, and then finishes."""

    def __init__(self, chunks: list[str]):
        self.chunks = chunks
        self.polls = 0

    def get_job_status(self, _sid):
        return _Status("SUCCEEDED", True) if self.polls >= len(self.chunks) - 1 else _Status("RUNNING", False)

    def get_job_logs(self, _sid):
        log = self.chunks[min(self.polls, len(self.chunks) - 1)]
        self.polls += 1
        return log


def test_follow_prints_whole_lines_only(monkeypatch):
    monkeypatch.setattr(js, "POLL_S", 0)
    log = ["epoch 0 loss 0.4\nepoch 1 lo", "epoch 0 loss 0.4\nepoch 1 loss 0.3\n", "epoch 0 loss 0.4\nepoch 1 loss 0.3\ndone"]
    lines: list[str] = []
    assert js.follow(_GrowingLog(log), "sid", timeout_s=10, out=lines.append) == "SUCCEEDED"
    assert lines == ["  | epoch 0 loss 0.4", "  | epoch 1 loss 0.3", "  | done"]


class _Client:
    def __init__(self, error: Exception | None = None):
        self.error = error
        self.calls = []

    def submit_job(self, **kwargs):
        self.calls.append(kwargs)
        if self.error:
            raise self.error
        return kwargs.get("submission_id") or "raysubmit_new"


def test_duplicate_submission_id_is_already_submitted_not_an_error():
    client = _Client(RuntimeError("Request failed with status code 500: Job with submission_id x already exists."))
    result = js.submit(client, "jobs.train", ["a=1"], js.metadata("train", "churn", "drift", "ep-1"), submission_id="x")
    assert result == js.Submission("x", already_existed=True)
    assert client.calls[0]["entrypoint"] == "python -m jobs.train a=1"
    assert client.calls[0]["metadata"] == {"job_name": "train", "model": "churn", "trigger": "drift", "episode": "ep-1"}


def test_other_submission_errors_propagate():
    with pytest.raises(RuntimeError, match="boom"):
        js.submit(_Client(RuntimeError("boom")), "jobs.train", [], js.metadata("train", "churn"), submission_id="x")


class _Recorder:
    def __init__(self):
        self.kwargs = None

    def submit_job(self, **kwargs):
        self.kwargs = kwargs
        return "raysubmit_1"


def test_overrides_survive_the_shell_and_env_vars_reach_the_driver():
    import shlex

    client = _Recorder()
    overrides = ["trainer.epochs=3", 'drift.retrain.overrides=["+experiment=quick","trainer.num_workers=1"]',
                 "data.source.path=/tmp/a b/c.parquet"]
    js.submit(client, "jobs.pipeline", overrides, js.metadata("pipeline", "m"), env_vars={"FOUNDRY_API_KEY": "k"})
    # What the job's shell will hand to Python is exactly the list given.
    assert shlex.split(client.kwargs["entrypoint"]) == ["python", "-m", "jobs.pipeline", *overrides]
    assert client.kwargs["runtime_env"]["env_vars"] == {"FOUNDRY_API_KEY": "k"}
    assert "k" not in str(client.kwargs["metadata"])


def test_no_runtime_env_without_working_dir_or_env_vars():
    client = _Recorder()
    js.submit(client, "jobs.train", [], js.metadata("train", "m"), working_dir=None)
    assert client.kwargs["runtime_env"] is None


def test_follow_strips_progress_bar_escapes(monkeypatch):
    monkeypatch.setattr(js, "POLL_S", 0)
    log = ["\x1b[A\x1b[A\x1b[2Kpipeline done in 54 s\n"]
    lines: list[str] = []
    js.follow(_GrowingLog(log), "sid", timeout_s=10, out=lines.append)
    assert lines == ["  | pipeline done in 54 s"]
