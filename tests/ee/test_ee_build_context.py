# Copyright (c) 2026 oidc_federation.azure contributors
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The Execution Environment of docs/awx/execution-environment.yml gets the collection's Python requirements.

``ansible-builder create`` writes the build context of the documented EE definition, with the collection
installed from the tarball ``ansible-galaxy collection build`` makes. No container is built: the steps of the
Containerfile that decide the Python requirements (the galaxy stage's ``ansible-galaxy collection install -r
requirements.yml`` and the builder stage's ``introspect.py introspect --write-pip``) are run here with the very
files and scripts of the context, and the requirements they produce are checked against
``meta/ee-requirements.txt``, the pinned test versions and the SDK packages the code imports.

Tools come from the lint venv (``LINT_VENV``, default ``.venv-lint``: ansible-builder, ansible-galaxy);
``OIDC_COLLECTION_TARBALL`` names a tarball already built (``scripts/lint.sh`` passes it), else one is built.
Run: ``bash scripts/lint.sh ee`` (or ``.venv/bin/python -m pytest tests/ee`` once .venv-lint exists).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
COLLECTION = "oidc_federation.azure"
EE_DEFINITION = ROOT / "docs" / "awx" / "execution-environment.yml"


def lint_tool(name: str) -> Path:
    venv = Path(os.environ.get("LINT_VENV", ROOT / ".venv-lint"))
    tool = venv / "bin" / name
    if not tool.exists():
        pytest.fail("{0} not found in {1}: run `bash scripts/lint-venv.sh` (or `make lint`) first".format(name, venv))
    return tool


def run(cmd: list[str | Path], cwd: Path) -> str:
    # As in the image: no collection but those installed by the build (the dev checkout's path is not inherited).
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_COLLECTIONS_PATH")}
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, check=False,
                          timeout=300)
    assert proc.returncode == 0, "{0} failed ({1}):\n{2}\n{3}".format(
        " ".join(map(str, cmd)), proc.returncode, proc.stdout[-3000:], proc.stderr[-3000:])
    return proc.stdout


def parse_requirements(text: str) -> list[tuple[Requirement, str]]:
    """(requirement, comment) of each requirement line."""
    result = []
    for line in text.splitlines():
        spec, _sep, comment = line.partition("#")
        if spec.strip():
            result.append((Requirement(spec.strip()), comment.strip()))
    return result


@pytest.fixture(scope="module")
def tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("OIDC_COLLECTION_TARBALL")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("dist")
    built = run(["bash", ROOT / "scripts" / "build-collection.sh", out, lint_tool("ansible-galaxy")], ROOT)
    return Path(built.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def build(tarball: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Create the build context and run its requirement-deciding steps; return the paths of interest."""
    work = tmp_path_factory.mktemp("ee")
    definition = yaml.safe_load(EE_DEFINITION.read_text())
    # The documented definition, with the collection taken from the tarball instead of Galaxy.
    collections = definition["dependencies"]["galaxy"]["collections"]
    assert [c["name"] for c in collections] == [COLLECTION], collections
    shutil.copy(tarball, work / tarball.name)
    definition["dependencies"]["galaxy"]["collections"] = [
        {"name": "collections/{0}".format(tarball.name), "type": "file"}]
    definition["additional_build_files"] = [{"src": tarball.name, "dest": "collections"}]
    (work / "execution-environment.yml").write_text(yaml.safe_dump(definition, sort_keys=False))
    context = work / "context"
    run([lint_tool("ansible-builder"), "create", "--file", "execution-environment.yml", "--context", context,
         "--output-filename", "Containerfile"], work)
    build_dir = context / "_build"
    collections_dir = work / "usr-share-ansible-collections"
    # Galaxy stage (WORKDIR /build): ANSIBLE_GALAXY_DISABLE_GPG_VERIFY=1 ansible-galaxy collection install -r ...
    run([lint_tool("ansible-galaxy"), "collection", "install", "--offline", "--force", "-r", "requirements.yml",
         "--collections-path", collections_dir], build_dir)
    # Builder stage: introspect.py introspect --write-bindep=... --write-pip=... (collections path passed explicitly)
    pip_out, bindep_out = work / "requirements.txt", work / "bindep.txt"
    run([lint_tool("python"), build_dir / "scripts" / "introspect.py", "introspect", "--write-pip", pip_out,
         "--write-bindep", bindep_out, collections_dir], work)
    return {"context": context, "pip": pip_out, "bindep": bindep_out, "collections": collections_dir}


def test_definition_uses_ranges_not_pins() -> None:
    definition = yaml.safe_load(EE_DEFINITION.read_text())
    assert definition["version"] == 3
    deps = definition["dependencies"]
    assert "python" not in deps, "the collection brings its Python requirements; do not repeat them here"
    for key in ("ansible_core", "ansible_runner"):
        spec = Requirement(deps[key]["package_pip"]).specifier
        assert spec and not any(s.operator in ("==", "===") for s in spec), (key, str(spec))


def test_context_is_complete(build: dict[str, Path], tarball: Path) -> None:
    containerfile = (build["context"] / "Containerfile").read_text()
    assert "introspect.py introspect" in containerfile
    assert "ansible-galaxy collection install" in containerfile
    assert "FROM $EE_BASE_IMAGE" in containerfile
    requirements = yaml.safe_load((build["context"] / "_build" / "requirements.yml").read_text())
    assert requirements["collections"] == [{"name": "collections/{0}".format(tarball.name), "type": "file"}]
    assert (build["context"] / "_build" / "collections" / tarball.name).is_file()
    installed = build["collections"] / "ansible_collections" / "oidc_federation" / "azure"
    assert (installed / "meta" / "execution-environment.yml").is_file()
    assert (installed / "MANIFEST.json").is_file()


def test_generated_requirements_are_the_collection_ranges(build: dict[str, Path]) -> None:
    generated = parse_requirements(build["pip"].read_text())
    declared = parse_requirements((ROOT / "meta" / "ee-requirements.txt").read_text())
    assert declared, "meta/ee-requirements.txt declares no requirement"
    by_name = {canonicalize_name(req.name): (req, comment) for req, comment in generated}
    for req, _comment in declared:
        name = canonicalize_name(req.name)
        assert name in by_name, "{0} from meta/ee-requirements.txt is missing from the EE requirements:\n{1}".format(
            req, build["pip"].read_text())
        got, comment = by_name[name]
        assert got.specifier == req.specifier, (str(got), str(req))
        assert comment == "from collection {0}".format(COLLECTION), comment
    for req, comment in generated:
        specs = list(req.specifier)
        assert specs, "{0} ({1}) has no version range".format(req, comment)
        assert not any(s.operator in ("==", "===") for s in specs), "{0} ({1}) is pinned".format(req, comment)
        assert any(s.operator in ("<", "<=", "~=") for s in specs), "{0} ({1}) has no upper bound".format(req, comment)


def test_no_system_packages_needed(build: dict[str, Path]) -> None:
    # Every dependency ships wheels: the EE needs no compiler or -devel package. introspect writes no bindep file
    # when no collection declares system packages (and the pip file, checked above, proves it ran).
    assert build["pip"].is_file()
    text = build["bindep"].read_text() if build["bindep"].exists() else ""
    assert not [line for line in text.splitlines() if line.strip()], text


def test_tested_versions_are_inside_the_ranges() -> None:
    """The pinned versions of requirements/dev.txt, which the tests run with, satisfy the EE ranges."""
    pins = {}
    for line in (ROOT / "requirements" / "dev.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s#]+)", line)
        if match:
            pins[canonicalize_name(match.group(1))] = match.group(2)
    for req, _comment in parse_requirements((ROOT / "meta" / "ee-requirements.txt").read_text()):
        name = canonicalize_name(req.name)
        assert name in pins, "{0} is not pinned in requirements/dev.txt, so no test runs with it".format(req.name)
        assert req.specifier.contains(pins[name], prereleases=True), "tested {0}=={1} is outside {2}".format(
            req.name, pins[name], req)


def _dependency_closure(names: set[str]) -> set[str]:
    """The distributions ``names`` pull in (from the metadata of the test venv, which has them installed)."""
    seen: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for line in requires:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return seen


def test_every_imported_sdk_package_is_installed_by_the_ee() -> None:
    """Each pip package the code loads (``_clients.PACKAGES``, python-gitlab in ``_gitlab_api.py``) is declared, or
    comes with a declared one."""
    tree = ast.parse((ROOT / "plugins" / "module_utils" / "_clients.py").read_text())
    packages = None
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "PACKAGES" for t in node.targets):
            packages = ast.literal_eval(node.value)
    assert packages, "PACKAGES (import -> pip package) not found in plugins/module_utils/_clients.py"
    # _gitlab_api.py loads python-gitlab on its own (MissingLibraryError names the pip package)
    gitlab_api = (ROOT / "plugins" / "module_utils" / "_gitlab_api.py").read_text()
    loaded = re.findall(r"MissingLibraryError\('([A-Za-z0-9_.\-]+)'", gitlab_api)
    assert set(loaded) == {"python-gitlab"}, loaded
    packages = dict(packages, gitlab=loaded[0])
    declared = {canonicalize_name(req.name) for req, _comment in parse_requirements(
        (ROOT / "meta" / "ee-requirements.txt").read_text())}
    closure = _dependency_closure(declared)
    missing = sorted({canonicalize_name(p) for p in packages.values()} - closure)
    assert not missing, "imported but neither declared in meta/ee-requirements.txt nor pulled in: {0}".format(missing)
