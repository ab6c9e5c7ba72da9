"""foundry/console/entry.py ``exit_when_done``: a job's process ends as soon as its main returns, with main's
exit code and its output flushed, skipping the interpreter's teardown (Ray's atexit hook alone sleeps 0.5 s);
an uncaught exception still exits 1 with its traceback. Real subprocesses, no Ray."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import atexit, sys
from pathlib import Path
from foundry.console.entry import exit_when_done

marker = Path(sys.argv[1])
atexit.register(lambda: marker.write_text("teardown ran"))

def main():
    print("done, no newline at the end", end="")
    print("to stderr", file=sys.stderr, end="")
    {body}

exit_when_done(main)
"""


def _run(tmp_path, body: str) -> tuple[subprocess.CompletedProcess, bool]:
    marker = tmp_path / "teardown"
    done = subprocess.run([sys.executable, "-c", SCRIPT.format(body=body), str(marker)],
                          capture_output=True, text=True, timeout=60)
    return done, marker.exists()


@pytest.mark.parametrize("body, code", [("return 0", 0), ("return None", 0), ("return 3", 3),
                                        ("sys.exit(4)", 4), ("raise SystemExit(2)", 2)])
def test_mains_exit_code_with_output_flushed_and_no_teardown(tmp_path, body, code):
    done, teardown_ran = _run(tmp_path, body)
    assert done.returncode == code, done.stderr
    assert done.stdout == "done, no newline at the end" and done.stderr.startswith("to stderr")
    assert not teardown_ran  # atexit hooks (Ray's shutdown among them) are skipped


def test_a_message_exit_prints_it_and_exits_1(tmp_path):
    done, _ = _run(tmp_path, 'sys.exit("error: bad input")')
    assert done.returncode == 1 and done.stderr.endswith("error: bad input\n")


def test_an_uncaught_exception_takes_pythons_ordinary_path(tmp_path):
    done, teardown_ran = _run(tmp_path, 'raise ValueError("boom")')
    assert done.returncode == 1 and "ValueError: boom" in done.stderr and "Traceback" in done.stderr
    assert teardown_ran


def test_the_deploy_cli_ends_without_the_interpreters_teardown(tmp_path):
    """``python -m serve_apps.deploy`` connects to Ray and loads torch for its preflight; ending it through
    ``exit_when_done`` took 1.9 s off every deploy. Its ``--write`` path needs no cluster: run as ``__main__``
    with an atexit hook of our own, which must not run."""
    marker, out = tmp_path / "teardown", tmp_path / "serve.yaml"
    code = ("import atexit, runpy, sys\n"
            f"atexit.register(lambda: open({str(marker)!r}, 'w').write('teardown ran'))\n"
            f"sys.argv = ['deploy', '--write', {str(out)!r}, '--no-pin', 'storage.root={tmp_path}']\n"
            "runpy.run_module('serve_apps.deploy', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert out.exists() and f"wrote {out}" in done.stdout
    assert not marker.exists()  # the interpreter's teardown (atexit hooks, Ray's shutdown among them) was skipped
