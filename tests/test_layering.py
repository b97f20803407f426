"""The dependency direction of DESIGN.md §8, checked on the source: a module that imports a layer it must
not know fails here, with the offending import named."""

from __future__ import annotations

import ast
import re
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
    "dtypes": WEB | ML | ORT | PROM | {"pydantic"},
    "manifest": WEB | ML | ORT | PROM | {"numpy"},
    "bundle": WEB | ML | ORT | PROM | {"numpy"},
    "feed": WEB | ML | ORT | PROM | {"pydantic"},
    "decoding/__init__": WEB | ML | ORT | PROM,
    "decoding/schema": WEB | ML | ORT | PROM,
    "decoding/_shapes": WEB | ML | ORT | PROM | {"numpy", "pydantic"},
    "decoding/_vectorised": WEB | ML | ORT | PROM | {"pydantic"},
    "decoding/_checked": WEB | ML | ORT | PROM | {"pydantic"},
    "answers": WEB | ML | ORT | PROM,
    "runtime": WEB | PROM | {"skl2onnx", "onnx", "pandas"},
    "loader": WEB | ML | ORT | PROM,
    "replay": WEB | ML | ORT | PROM,
    "batching": WEB | ML | ORT | PROM,
    "registry": WEB | ML | ORT | PROM,
    "serving": WEB | ML | ORT | PROM | {"numpy"},
    "policies": WEB | ML | ORT | PROM | {"numpy"},
    "rollout": WEB | ML | ORT | PROM | {"numpy", "pydantic"},
    "shadow": WEB | ML | ORT | PROM | {"pydantic"},
    "residency": WEB | ML | ORT | PROM | {"numpy", "pydantic"},
    "load_retries": WEB | ML | ORT | PROM | {"numpy", "pydantic"},
    "registry_events": WEB | ML | ORT | PROM | {"numpy", "pydantic"},
    "version_table": WEB | ML | ORT | PROM,
    "rollout_metrics": WEB | ML | ORT,
    "keys": WEB | ML | ORT | PROM | {"numpy"},
    "ratelimit": WEB | ML | ORT | PROM | {"numpy"},
    "settings": WEB | ML | ORT | PROM | {"numpy"},
    "metrics": WEB | ML | ORT,
    "monitoring/__init__": WEB | ML | ORT,
    "monitoring/monitor": WEB | ML | ORT,
    "monitoring/columns": WEB | ML | ORT | PROM | {"pydantic"},
    "monitoring/buckets": WEB | ML | ORT | PROM | {"pydantic"},
    "monitoring/drift": WEB | ML | ORT | PROM,
    "monitoring/feedback": WEB | ML | ORT | PROM | {"numpy", "pydantic"},
    "monitoring/payload_log": WEB | ML | ORT | PROM | {"numpy", "pydantic"},
    "monitoring/payload_lines": WEB | ML | ORT | PROM | {"pydantic"},
    "monitoring/payload_wire": WEB | ML | ORT | PROM | {"pydantic"},
    "monitoring/payload_writer": WEB | ML | ORT | PROM | {"pydantic"},
    "monitoring/metrics": WEB | ML | ORT,
    "monitoring/tracing": WEB | ML | ORT | PROM | {"numpy"},
    "server/heap": WEB | ML | ORT | PROM | {"numpy", "pydantic"},
    "server/workers": ML | ORT | PROM | {"starlette", "numpy"},
    # the client runs in applications: httpx only, nothing of the gateway
    "client/__init__": ML | ORT | PROM | {"starlette", "uvicorn", "numpy", "pydantic"},
    "client/errors": ML | ORT | PROM | {"starlette", "uvicorn", "numpy", "pydantic"},
    "client/answers": ML | ORT | PROM | {"starlette", "uvicorn", "numpy", "pydantic"},
    "sklearn_model": WEB | ORT | PROM | {"skl2onnx", "onnx"},
    "admission": WEB | ML | ORT | PROM,
    # runs as a script with no site-packages (python -I -S): the standard library only
    "onnx_check": WEB | ML | ORT | PROM | {"numpy", "pydantic", "bundlegate"},
    "signing": WEB | ML | ORT | PROM | {"numpy"},
    "objectstore": WEB | ML | ORT | PROM | {"numpy"},
    "tables": WEB | (ML - {"pandas"}) | ORT | PROM,
    "offline": WEB | {"sklearn", "skl2onnx", "onnx", "joblib"} | PROM,
    "distributed": WEB | {"sklearn", "skl2onnx", "onnx", "joblib"} | PROM,
}
PACKER_ONLY = {"skl2onnx", "onnx", "pandas"}
_SERVES_PICKLES = {"sklearn_model.py": {"pandas"}}  # runtime sklearn: DataFrame models get a DataFrame
_SCORES_TABLES = {f"{m}.py": {"pandas"} for m in ("offline", "tables", "distributed")}  # lazily
EXTRAS = {"pandas", "pyarrow", "fsspec", "s3fs", "dask", "distributed"}
OUTER = ("bundlegate.http", "bundlegate.cli", "bundlegate.server")
MAX_LINES = 400


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
        if "starlette" in _imports(p, top_level_only=False) and "http" not in p.relative_to(SRC).parts
    ]
    assert offenders == []


def test_only_the_packer_imports_the_conversion_stack() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if _imports(p, top_level_only=False)
        & (PACKER_ONLY - _SERVES_PICKLES.get(p.name, set()) - _SCORES_TABLES.get(p.name, set()))
        and "packer" not in p.relative_to(SRC).parts
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
        if "packer" not in p.relative_to(SRC).parts
        and any(m.startswith("bundlegate.packer") for m in _module_imports(p, top_level_only=True))
    ]
    assert offenders == []


def _core_files() -> list[Path]:
    """The core: the top-level modules, request decoding and monitoring (not http/, server/, cli/,
    packer/)."""
    return [*SRC.glob("*.py"), *(SRC / "decoding").glob("*.py"), *(SRC / "monitoring").glob("*.py")]


def test_core_does_not_import_the_outer_layers() -> None:
    offenders = [
        str(p.relative_to(SRC))
        for p in _core_files()
        if any(m.startswith(OUTER) for m in _module_imports(p, top_level_only=False))
    ]
    assert offenders == []


def test_runtime_sits_below_request_decoding() -> None:
    """The runtime runs feeds; it never needs to know how requests become them."""
    imported = _module_imports(SRC / "runtime.py", top_level_only=False)
    assert not {m for m in imported if m.startswith("bundlegate.decoding")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_circle() -> None:
    """No module reaches itself through imports, lazy ones included (``from a.b import c`` counts as
    importing ``a.b``, or the module ``a.b.c`` where that is one)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("bundlegate"):
                targets = [f"{node.module}.{a.name}" for a in node.names]
                found = [t for t in targets if t in modules]
                edges |= set(found) if found else {node.module}
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in modules}
        # a package's __init__ re-exporting its own modules is not a circle
        graph[name] = {e for e in edges if e in modules and e != name and not e.startswith(name + ".")}
    circles: list[list[str]] = []

    def visit(node: str, path: list[str], seen: set[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt == path[0]:
                circles.append([*path, nxt])
            elif nxt not in seen and nxt > path[0]:  # each circle once, from its smallest module
                seen.add(nxt)
                visit(nxt, [*path, nxt], seen)

    for start in sorted(graph):
        visit(start, [start], {start})
    assert circles == []


def test_no_module_over_the_size_limit() -> None:
    sizes = {str(p.relative_to(SRC)): len(p.read_text().splitlines()) for p in SRC.rglob("*.py")}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_the_architecture_map_names_every_module_and_setting() -> None:
    """docs/architecture.md is the map a new maintainer reads: every module and every setting's
    variable is on it."""
    from dataclasses import fields

    from bundlegate.settings import Settings, env_name

    doc = (SRC.parent.parent / "docs" / "architecture.md").read_text()
    modules = [
        str(p.relative_to(SRC))
        for p in SRC.rglob("*.py")
        if p.name not in ("__init__.py", "__main__.py") or p.parent.name == "decoding"
    ]
    missing = [
        m for m in modules if f"`{m}`" not in doc and f"`{m.removesuffix('/__init__.py')}/`" not in doc
    ]
    assert missing == []
    assert [env_name(f.name) for f in fields(Settings) if env_name(f.name) not in doc] == []


def test_the_client_imports_no_gateway_module() -> None:
    """Applications install the client without the gateway's serving stack."""
    for path in (SRC / "client").glob("*.py"):
        imported = _module_imports(path, top_level_only=False)
        assert {m for m in imported if not m.startswith("bundlegate.client")} == set(), path.name


def test_the_architecture_map_lists_every_model_state_and_endpoint_label() -> None:
    """The metric label values operators write dashboards and alerts against."""
    from typing import get_args

    from bundlegate.status import State

    doc = (SRC.parent.parent / "docs" / "architecture.md").read_text()
    (states,) = re.findall(r"^\| `bundlegate_models` \| gauge \| state \((.*)\) \|$", doc, re.MULTILINE)
    assert sorted(re.findall(r"`(\w+)`", states)) == sorted(get_args(State))
    (labels,) = re.findall(r"`endpoint` is the route name\s*\(([^)]*)\)", doc)
    named = {
        name
        for path in (SRC / "http").rglob("*.py")
        for name in re.findall(r'route\(\s*ctx,[^()]*?"(\w+)"\)', path.read_text())
    }
    assert named
    assert set(re.findall(r"`(\w+)`", labels)) == named | {"other"}
