"""A driver whose working directory is deleted under it keeps working (foundry/runtime/workdir.py)."""

from __future__ import annotations

import os
import tempfile

from foundry.runtime.workdir import ensure_cwd, stable_cwd


def test_a_deleted_working_directory_is_left_for_the_temp_dir(tmp_path):
    start = os.getcwd()
    gone = tmp_path / "unpacked_job"
    gone.mkdir()
    try:
        os.chdir(gone)
        gone.rmdir()  # what a fake node's clean-up does to a running job
        with stable_cwd():
            assert os.getcwd() == os.path.realpath(tempfile.gettempdir())
            assert os.path.relpath("a/b", start="a") == "b"  # Tune's listing: needs a cwd
        assert os.getcwd() == os.path.realpath(tempfile.gettempdir())  # nowhere to go back to
        os.chdir(tmp_path)
        with stable_cwd():
            pass
        assert os.getcwd() == str(tmp_path)  # back where it was when that still exists
        os.chdir(gone.parent)
        (tmp_path / "again").mkdir()
        os.chdir(tmp_path / "again")
        (tmp_path / "again").rmdir()
        ensure_cwd()
        assert os.getcwd() == os.path.realpath(tempfile.gettempdir())
    finally:
        os.chdir(start)
