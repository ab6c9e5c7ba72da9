"""The retrain driver imports the drift detectors' libraries while Ray Train runs, not after it."""

from __future__ import annotations

import subprocess
import sys

from foundry.train import workflow


def test_prefetch_imports_the_detector_libraries_in_a_background_thread():
    code = ("import sys, threading; from foundry.train.workflow import DETECTOR_MODULES, prefetch_imports; "
            "assert 'alibi_detect.cd' not in sys.modules; t = prefetch_imports(DETECTOR_MODULES); "
            "assert t is not threading.current_thread() and t.daemon; t.join(120); "
            "print('alibi_detect.cd' in sys.modules, 'foundry.drift.detectors' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


def test_a_failing_prefetch_is_silent_and_leaves_the_error_to_the_real_import():
    thread = workflow.prefetch_imports(("foundry.no_such_module_here",))
    thread.join(30)
    assert not thread.is_alive()


def test_the_training_path_prefetches_before_fit():
    """Removing the call from train_and_register puts ~3 s of imports back on every retrain's critical path."""
    import inspect

    source = inspect.getsource(workflow._train_and_register)
    assert source.index("prefetch_imports(DETECTOR_MODULES)") < source.index("trainer.fit()")
