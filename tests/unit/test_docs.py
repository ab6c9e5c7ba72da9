"""The documentation: the mkdocs site builds with no warning (every link and anchor between pages checked),
README.md's relative links point at files that exist, the architecture page names every package and module
(and only paths that exist), and the configuration page names every config key. No Ray needed."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import types
import typing
from pathlib import Path

from markdown.extensions.toc import slugify

from foundry import config

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
README = ROOT / "README.md"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
# The code folders whose every module the architecture page names.
CODE = ("foundry", "jobs", "serve_apps", "cluster", "benchmarks")


def test_the_site_builds_strict_with_no_warning(tmp_path):
    """``mkdocs build --strict`` (what ``make docs`` runs): a broken link, anchor or unlisted page fails it."""
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site"),
         "--config-file", str(ROOT / "mkdocs.yml")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    log = run.stdout + run.stderr
    assert run.returncode == 0, log
    warnings = [line for line in log.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert not warnings, "\n".join(warnings)
    assert (tmp_path / "site" / "index.html").exists()


def test_the_readme_starts_with_the_two_commands():
    lines = README.read_text().splitlines()
    assert lines[0] == "# Foundry"
    block = lines[lines.index("```bash") + 1: lines.index("```")]
    assert [line.split()[:2] for line in block] == [["make", "demo"], ["make", "test"]]


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.S | re.M)
    return {slugify(re.sub(r"[`*]", "", m.group(1)).strip(), "-") for m in re.finditer(r"^#+\s+(.+)$", text, re.M)}


def test_the_readmes_relative_links_exist():
    bad = []
    for target in LINK.findall(README.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        path, _, anchor = target.partition("#")
        file = ROOT / path
        if not file.exists():
            bad.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            bad.append(f"{target}: {path} has no heading #{anchor}")
    assert not bad, "README.md links to:\n" + "\n".join(bad)


def _named_paths(text: str) -> set[str]:
    """Repository paths written as code spans: `foundry/drift/alarm.py`, `conf/drift/`."""
    spans = re.findall(r"`([^`\s]+)`", text)
    return {s.rstrip("/") for s in spans if re.match(r"^(foundry|jobs|serve_apps|cluster|conf|benchmarks)(/|$)", s)}


def test_the_architecture_page_names_every_package_and_module():
    text = (DOCS / "architecture.md").read_text()
    named = _named_paths(text)
    missing = []
    for top in CODE:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT)
            if "results" in rel.parts or "__pycache__" in rel.parts:
                continue
            if rel.as_posix() not in named:
                missing.append(rel.as_posix())
    for group in sorted(p for p in (ROOT / "conf").iterdir() if p.is_dir()):
        if f"`conf/{group.name}/`" not in text:
            missing.append(f"conf/{group.name}/")
    assert not missing, "docs/architecture.md's table does not name:\n" + "\n".join(missing)


def test_every_path_on_the_architecture_page_exists():
    gone = [p for p in _named_paths((DOCS / "architecture.md").read_text()) if not (ROOT / p).exists()]
    assert not gone, "docs/architecture.md names paths that do not exist:\n" + "\n".join(sorted(gone))


def _keys(cls: type, prefix: str = ""):
    """Every leaf key of the typed config: ``<name>`` for a map's keys, ``[]`` for a list's items."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        path = f"{prefix}.{field.name}" if prefix else field.name
        hint = hints[field.name]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            hint = args[0] if len(args) == 1 else hint
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if dataclasses.is_dataclass(hint):
            yield from _keys(hint, path)
        elif origin is dict and len(args) == 2 and dataclasses.is_dataclass(args[1]):
            yield from _keys(args[1], f"{path}.<name>")
        elif origin is list and args and dataclasses.is_dataclass(args[0]):
            yield from _keys(args[0], f"{path}[]")
        else:
            yield path


def test_the_configuration_page_names_every_key():
    text = (DOCS / "configuration.md").read_text()
    missing = [key for key in _keys(config.FoundryConfig) if f"`{key}`" not in text]
    assert not missing, "docs/configuration.md does not document:\n" + "\n".join(missing)
