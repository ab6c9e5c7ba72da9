"""The code's shape: the library stands alone, its top holds packages, and no module outgrows one job.

Why tests: each rule was broken once and stayed broken until a review found it (the demo imported the
top-level ``cluster`` package; 17 loose modules piled up at ``foundry/``'s top; ``config.py`` reached 1,129 lines).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "foundry"
# What a user runs or deploys, built on the library; the library must never need them.
APPLICATION_PACKAGES = {"cluster", "jobs", "serve_apps", "benchmarks", "tests"}
MAX_MODULE_LINES = 400
TOP_LEVEL_MODULES = {"__init__.py", "errors.py"}  # everything else at foundry/'s top is a package


def _imported_top_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_library_never_imports_the_application_packages():
    offenders = {str(p.relative_to(ROOT)): sorted(_imported_top_names(p) & APPLICATION_PACKAGES)
                 for p in LIBRARY.rglob("*.py")}
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"foundry/ imports the packages built on it: {offenders}"


def test_the_import_scan_sees_an_application_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from cluster import lifecycle\n    import jobs.train\n")
    assert _imported_top_names(probe) >= {"cluster", "jobs"}


def test_foundry_top_level_holds_packages_not_loose_modules():
    loose = sorted(p.name for p in LIBRARY.glob("*.py") if p.name not in TOP_LEVEL_MODULES)
    assert not loose, f"group these into a package under foundry/ (and name it in docs/architecture.md): {loose}"


def test_no_module_over_the_size_limit():
    too_long = {}
    for folder in ("foundry", "jobs", "serve_apps", "cluster", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            lines = len(path.read_text().splitlines())
            if lines > MAX_MODULE_LINES:
                too_long[str(path.relative_to(ROOT))] = lines
    assert not too_long, f"split these modules by job (at most {MAX_MODULE_LINES} lines): {too_long}"


WHOLE_CONFIG_TYPES = {"FoundryConfig", "config.FoundryConfig", "MonitorConfig", "MonitorSections"}


def _whole_config_readers(path: Path, root: Path = ROOT) -> list[tuple[str, set[str], bool]]:
    """(function, top-level keys it reads, whether it passes the whole object on) for each parameter typed
    as a whole config."""
    found = []
    for fn in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for arg in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]:
            if arg.annotation is None or ast.unparse(arg.annotation) not in WHOLE_CONFIG_TYPES:
                continue
            attrs = [n for n in ast.walk(fn)
                     if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == arg.arg]
            loads = [n for n in ast.walk(fn) if isinstance(n, ast.Name) and n.id == arg.arg]
            found.append((f"{path.relative_to(root)}:{fn.lineno} {fn.name}", {a.attr for a in attrs},
                          len(loads) > len(attrs)))
    return found


def test_no_function_takes_the_whole_config_to_read_one_section():
    """A function that reads one section takes that section (``scaling_config(trainer)``), so a reader sees
    what it depends on and a test builds only that."""
    offenders = [f"{name} reads only {sorted(keys)}"
                 for folder in ("foundry", "jobs", "serve_apps", "cluster", "benchmarks")
                 for path in (ROOT / folder).rglob("*.py")
                 for name, keys, passed_on in _whole_config_readers(path)
                 if len(keys) <= 1 and not passed_on]
    assert not offenders, "take the section instead of the whole config:\n" + "\n".join(offenders)


def test_the_section_scan_sees_a_one_section_reader(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("def scaling(cfg: FoundryConfig):\n    return cfg.trainer.num_workers\n\n"
                     "def both(cfg: FoundryConfig):\n    return cfg.trainer, cfg.data\n\n"
                     "def passes(cfg: FoundryConfig):\n    return other(cfg, cfg.trainer)\n")
    found = {name.split()[-1]: (keys, passed) for name, keys, passed in _whole_config_readers(probe, tmp_path)}
    assert found == {"scaling": ({"trainer"}, False), "both": ({"trainer", "data"}, False),
                     "passes": ({"trainer"}, True)}



def test_paths_the_library_derives_from_its_own_location_point_at_the_checkout():
    """Moving a module between packages changes ``Path(__file__).parents``: the job upload folder and the
    bundled conf/ must still be the checkout's (a retrain job uploaded foundry/ alone once, after a move)."""
    from foundry.config.sources import bundled_conf_dir
    from foundry.runtime.jobs import CODE_DIR

    assert CODE_DIR == ROOT
    assert bundled_conf_dir() == ROOT / "conf"
    own_file = re.compile(r"Path\(__file__\)|os\.path\.\w+\(__file__\)")  # this module's own location
    derived = [str(p.relative_to(ROOT)) for p in LIBRARY.rglob("*.py") if own_file.search(p.read_text())]
    assert set(derived) <= {"foundry/runtime/jobs.py", "foundry/config/sources.py", "foundry/train/workflow.py"}, (
        "a new module derives a path from __file__: check it here too")
