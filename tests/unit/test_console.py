"""The ``foundry`` console script: every ``python -m`` entry point is one of its commands, ``foundry --help``
lists them all with the exit codes of ``foundry/errors.py``, and a command hands the rest of its line to
the module unchanged (same output, same exit code). No Ray needed."""

from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
from pathlib import Path

import pytest

from foundry import errors
from foundry.console import dispatch
from foundry.console.commands import COMMANDS, GROUPS

ROOT = Path(__file__).resolve().parents[2]
PYTHON = Path(sys.executable)
SCRIPT = PYTHON.with_name("foundry")
# The folders whose `python -m` modules are operations.
CODE = ("foundry", "jobs", "serve_apps", "cluster")
# Modules with a __main__ that are not operations a user runs, and why.
NOT_COMMANDS = {
    "foundry.serving.haproxy_ingress": "the foundry-haproxy executable that Ray Serve starts (its own console script)",
}


def _entry_points() -> set[str]:
    """Every module ``python -m`` can run: packages with a ``__main__.py``, modules with a ``__main__`` block."""
    found = set()
    for top in CODE:
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT)
            if "__pycache__" in rel.parts:
                continue
            if path.name == "__main__.py":
                found.add(".".join(rel.parent.parts))
            elif "if __name__ == \"__main__\":" in path.read_text():
                found.add(".".join(rel.with_suffix("").parts))
    return found


def _foundry(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    assert SCRIPT.exists(), f"{SCRIPT} is missing: pip install -e . installs the foundry console script"
    return subprocess.run([str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})


def _python_m(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_every_python_m_entry_point_is_a_foundry_command():
    entry_points = _entry_points()
    assert {"jobs.train", "cluster", "foundry.registry", "cluster.demo"} <= entry_points  # the scan works
    commands = {c.module for c in COMMANDS}
    missing = entry_points - commands - set(NOT_COMMANDS)
    assert not missing, f"`python -m` modules without a `foundry` command (foundry/console/commands.py): {missing}"
    assert commands <= entry_points, f"commands of modules that cannot run: {commands - entry_points}"


def test_every_command_names_a_main_that_exists():
    """Checked from the source, so the test imports no target (and no Ray)."""
    for c in COMMANDS:
        module, _, function = c.target.partition(":")
        path = ROOT / Path(*module.split("."))
        source = (path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).read_text()
        defined = {n.name for n in ast.parse(source).body if isinstance(n, ast.FunctionDef)}
        assert function in defined, f"{c.name}: {c.target} does not exist"
    names = [c.name for c in COMMANDS]
    assert len(names) == len(set(names))
    groups = {c.group for c in COMMANDS if " " in c.name}
    assert groups == set(GROUPS) and not groups & {c.name for c in COMMANDS}


def _main_block(module: str) -> str:
    path = ROOT / Path(*module.split("."))
    source = (path / "__main__.py" if path.is_dir() else path.with_suffix(".py")).read_text()
    return source[source.index('if __name__ == "__main__":'):]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.name)
def test_a_command_ends_as_its_module_does(command):
    """``foundry X`` wraps and exits like ``python -m X``: the flags mirror the module's ``__main__`` block."""
    block = _main_block(command.module)
    assert command.fast_exit == ("exit_when_done(" in block), command.name
    assert command.run_or_exit == ("run_or_exit(" in block), command.name


def test_a_job_command_skips_the_interpreter_teardown_and_the_others_keep_it(tmp_path):
    """The installed script: ``foundry replay`` (a job, ``exit_when_done``) ends without running atexit hooks, as
    ``python -m jobs.replay`` does; ``foundry registry`` runs them. A sitecustomize registers the probe hook."""
    (tmp_path / "sitecustomize.py").write_text("import atexit\natexit.register(lambda: print('TEARDOWN'))\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"}

    def script(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(SCRIPT), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env=env)

    job, other = script("replay", "--help"), script("registry", "--help")
    assert job.returncode == other.returncode == 0, job.stderr + other.stderr
    assert "TEARDOWN" not in job.stdout and "usage" in job.stdout
    assert other.stdout.rstrip().endswith("TEARDOWN")  # the probe works: the ordinary exit runs it


def test_foundry_help_lists_every_command_and_the_exit_codes(tmp_path):
    run = _foundry("--help", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    for c in COMMANDS:
        line = next((x for x in lines if x.strip().startswith(f"{c.name} ") or x.strip() == c.name), None)
        assert line is not None, f"`foundry --help` does not list {c.name}"
        assert c.module in line and c.summary in line and (c.operations in line)
    codes = lines[next(i for i, x in enumerate(lines) if x.startswith("exit codes")) + 1:]
    by_code = {int(x.split()[0]): x for x in codes}
    for cls in vars(errors).values():
        if inspect.isclass(cls) and issubclass(cls, errors.FoundryError):
            assert cls.__name__ in by_code[cls.exit_code], f"{cls.__name__} (exit {cls.exit_code}) not in {by_code}"
    assert "done" in by_code[0] and "usage" in by_code[2]


def _exit_codes_outside_errors_py() -> dict[str, int]:
    """Error classes with their own ``exit_code = N`` anywhere but ``foundry/errors.py``."""
    found = {}
    for top in CODE:
        for path in (ROOT / top).rglob("*.py"):
            if path == ROOT / "foundry" / "errors.py" or "__pycache__" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef):
                    for stmt in node.body:
                        names = [getattr(t, "id", "") for t in getattr(stmt, "targets", ())]
                        if "exit_code" in names and isinstance(stmt.value, ast.Constant):
                            found[node.name] = stmt.value.value
    return found


def test_exit_codes_defined_elsewhere_are_listed_too():
    elsewhere = _exit_codes_outside_errors_py()
    assert "ServeControlError" in elsewhere  # the scan works
    codes = dispatch.exit_codes()
    for name, code in elsewhere.items():
        assert name in codes[code][1], f"{name} (exit {code}): add it to dispatch.EXIT_CODES_ELSEWHERE"


def test_help_imports_neither_ray_nor_torch(tmp_path):
    probe = ("import sys; from foundry.console import main; main(['--help']); "
             "heavy = {'ray', 'torch', 'hydra', 'pandas', 'pyarrow'} & set(sys.modules); assert not heavy, heavy")
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_each_command_has_help(command, capsys):
    cmd = next(c for c in COMMANDS if c.name == command)
    try:
        rc = dispatch.main([*command.split(), "--help"])
    except SystemExit as exc:  # argparse's --help
        rc = exc.code
    assert rc == 0
    out = capsys.readouterr().out
    assert f"python -m {cmd.module}" in out and "usage:" in out


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_a_group_lists_its_commands(group, capsys):
    assert dispatch.main([group, "--help"]) == 0
    out = capsys.readouterr().out
    assert all(c.name.split()[1] in out for c in COMMANDS if c.group == group)


def test_the_rest_of_the_line_reaches_the_target_unchanged(monkeypatch):
    calls = []

    def fake(target):
        return lambda argv: calls.append((target, argv)) or 7

    monkeypatch.setattr(dispatch, "_resolve", fake)
    line = ["--from-version", "churn@production", "storage.root=/tmp/x", "+experiment=quick", "--timeout", "5"]
    assert dispatch.main(["monitor", "status", *line]) == 7
    assert dispatch.main(["train", *line]) == 7
    assert dispatch.main(["cluster", "up", "cluster.gcs_port=6390"]) == 7
    assert calls == [("jobs.monitor:main", ["--status", *line]), ("jobs.train:main", line),
                     ("cluster.__main__:main", ["up", "cluster.gcs_port=6390"])]


def test_the_installed_script_composes_overrides_as_python_m(tmp_path):
    """Same arguments, same output and exit code as the module: --root, a Hydra override, a registry error."""
    for args in (["--root", str(tmp_path / "reg"), "list"], ["list", f"storage.root={tmp_path}"],
                 ["--root", str(tmp_path / "reg"), "show", "nomodel", "production"]):
        ours, theirs = _foundry("registry", *args, cwd=tmp_path), _python_m("foundry.registry", *args, cwd=tmp_path)
        assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr)
        assert str(tmp_path) in ours.stdout + ours.stderr
    assert ours.returncode == errors.RegistryError.exit_code


def test_a_bad_override_exits_2_like_the_module(tmp_path):
    ours = _foundry("events", "nosuchkey=1", cwd=tmp_path)
    theirs = _python_m("foundry.ops.events", "nosuchkey=1", cwd=tmp_path)
    assert ours.returncode == theirs.returncode == errors.ConfigError.exit_code
    assert ours.stderr == theirs.stderr and "nosuchkey" in ours.stderr


@pytest.mark.parametrize("argv, message", [
    (["nope"], "unknown command 'nope'"),
    ([], "a command is required"),
    (["monitor"], "`foundry monitor` needs a command"),
    (["serve", "launch"], "unknown command serve 'launch'"),
    (["--version"], "unknown command '--version'"),
])
def test_a_bad_command_exits_2_with_a_message(argv, message, capsys):
    assert dispatch.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "usage: foundry" in err


def test_the_script_exits_2_on_an_unknown_command(tmp_path):
    run = _foundry("nope", cwd=tmp_path)
    assert run.returncode == 2 and "foundry: error: unknown command 'nope'" in run.stderr
