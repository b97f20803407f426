"""The converter stack's supported versions: pyproject.toml declares the ranges, ``.ci/constraints.txt``
pins what CI installs inside them, and under CI the installed versions are those pins, so the zoo proves
the declared range's newest end on every run."""

from __future__ import annotations

import os
import tomllib
from importlib.metadata import version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
STACK = ("scikit-learn", "skl2onnx", "onnxmltools", "onnxruntime")


def declared() -> dict[str, list[Requirement]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found: dict[str, list[Requirement]] = {}
    for line in [
        *project["dependencies"],
        *(d for deps in project["optional-dependencies"].values() for d in deps),
    ]:
        req = Requirement(line)
        found.setdefault(req.name, []).append(req)
    return found


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".ci" / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, pinned = line.partition("==")
            out[name.strip()] = pinned.strip()
    return out


@pytest.mark.parametrize("name", STACK)
def test_the_stack_has_a_bounded_range_and_a_pin_inside_it(name: str) -> None:
    reqs = declared()[name]
    for req in reqs:
        assert any(s.operator in ("<", "<=") for s in req.specifier), f"{req} has no upper bound"
        assert any(s.operator == ">=" for s in req.specifier), f"{req} has no lower bound"
        assert Version(pins()[name]) in req.specifier, f"{name}=={pins()[name]} is outside {req}"


def test_every_pin_is_inside_what_pyproject_declares() -> None:
    reqs = declared()
    for name, pinned in pins().items():
        for req in reqs.get(name, []):
            assert Version(pinned) in req.specifier, f"{name}=={pinned} is outside {req}"


def test_ci_runs_the_pinned_versions() -> None:
    if os.environ.get("CI", "").lower() != "true":
        pytest.skip("a laptop may run other versions; CI=true installs .ci/constraints.txt")
    for name, pinned in pins().items():
        assert version(name) == pinned, f"{name} {version(name)} installed, {pinned} pinned"
