"""The dependency direction of DESIGN.md §8, checked on the source: a module that imports a layer it must
not know fails here, with the offending import named."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "bundlegate"

WEB = {"starlette", "uvicorn", "fastapi", "httpx"}
ML = {"sklearn", "skl2onnx", "onnx", "joblib", "pandas"}
ORT = {"onnxruntime"}
PROM = {"prometheus_client"}

# module (relative to src/bundlegate, without .py) -> top-level packages it must not import
FORBIDDEN: dict[str, set[str]] = {
    "errors": WEB | ML | ORT | PROM | {"numpy", "pydantic"},
    "manifest": WEB | ML | ORT | PROM | {"numpy"},
    "bundle": WEB | ML | ORT | PROM | {"numpy"},
    "feed": WEB | ML | ORT | PROM | {"pydantic"},
    "request_shapes": WEB | ML | ORT | PROM | {"numpy", "pydantic"},
    "answers": WEB | ML | ORT | PROM,
    "tensor_plan": WEB | ML | ORT | PROM | {"pydantic"},
    "value_checks": WEB | ML | ORT | PROM | {"pydantic"},
    "schema": WEB | ML | ORT | PROM,
    "runtime": WEB | PROM | {"skl2onnx", "onnx", "pandas"},
    "batching": WEB | ML | ORT | PROM,
    "registry": WEB | ML | ORT | PROM,
    "serving": WEB | ML | ORT | PROM | {"numpy", "pydantic"},
    "keys": WEB | ML | ORT | PROM | {"numpy"},
    "ratelimit": WEB | ML | ORT | PROM | {"numpy"},
    "settings": WEB | ML | ORT | PROM | {"numpy"},
    "heap": WEB | ML | ORT | PROM | {"numpy", "pydantic"},
    "metrics": WEB | ML | ORT,
    "objectstore": WEB | ML | ORT | PROM | {"numpy"},
    "tables": WEB | (ML - {"pandas"}) | ORT | PROM,
    "offline": WEB | {"sklearn", "skl2onnx", "onnx", "joblib"} | PROM,
    "distributed": WEB | {"sklearn", "skl2onnx", "onnx", "joblib"} | PROM,
}
PACKER_ONLY = {"skl2onnx", "onnx", "pandas"}
OFFLINE = {"offline", "tables", "distributed"}  # table work: pandas (the offline extra), lazily
EXTRAS = {"pandas", "pyarrow", "fsspec", "s3fs", "dask", "distributed"}
OUTER = ("bundlegate.http", "bundlegate.cli")


def _imports(path: Path, *, top_level_only: bool) -> set[str]:
    """Top-level package names imported by a module; with ``top_level_only`` only module-level imports
    count (a lazy import inside a function is how the CLI reaches the packer)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _module_imports(path: Path, *, top_level_only: bool) -> set[str]:
    """Full dotted ``bundlegate.*`` modules imported (module level only when asked)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bundlegate"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("bundlegate")}
    return found


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_core_module_does_not_import_outer_layers(module: str) -> None:
    path = SRC / f"{module}.py"
    if not path.exists():
        pytest.fail(f"{module}.py is part of the documented module map but does not exist")
    bad = _imports(path, top_level_only=False) & FORBIDDEN[module]
    assert not bad, f"bundlegate.{module} imports {sorted(bad)}"


def test_only_the_http_package_imports_starlette() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if "starlette" in _imports(p, top_level_only=False) and p.parent.name != "http"
    ]
    assert offenders == []


def test_only_the_packer_imports_the_conversion_stack() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if _imports(p, top_level_only=False) & (PACKER_ONLY - ({"pandas"} if p.stem in OFFLINE else set()))
        and p.parent.name != "packer"
    ]
    assert offenders == []


def test_the_optional_extras_are_imported_lazily() -> None:
    """pandas, pyarrow, fsspec/s3fs and dask are extras: no module imports them when it is imported."""
    offenders = {
        str(p.relative_to(SRC)): sorted(found)
        for p in SRC.rglob("*.py")
        if (found := _imports(p, top_level_only=True) & EXTRAS)
    }
    assert offenders == {}


def test_nothing_outside_the_packer_imports_it_at_module_level() -> None:
    """The gateway installs without the pack extra: importing the CLI or the app must not pull sklearn."""
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.parent.name != "packer"
        and any(m.startswith("bundlegate.packer") for m in _module_imports(p, top_level_only=True))
    ]
    assert offenders == []


def test_core_does_not_import_the_http_layer() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.glob("*.py")
        if p.name != "devserve.py"
        and any(m.startswith(OUTER) for m in _module_imports(p, top_level_only=False))
    ]
    assert offenders == []
