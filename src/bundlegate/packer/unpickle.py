"""Loading a pickle, joblib or skops file without running what it names, unless the user trusts it.

A pickle is a program: every global it names (``posix.system``, ``builtins.eval``, ...) can be called
while it loads. ``load_pickle`` runs joblib's unpickler (plain pickles load through it too) with
``find_class`` limited to what fitted models are made of, and refuses the file at the first other global,
naming it, before anything from the file has been called:

- classes from the scientific stack (``SAFE_PACKAGES``: scikit-learn, NumPy, SciPy, pandas, joblib,
  XGBoost, LightGBM, CatBoost), outside their I/O, testing and build modules (of the boosting
  libraries and joblib only the modules their models are made of, ``MODEL_MODULES``), and never
  ``numpy.memmap`` (whose constructor writes files);
- NumPy ufuncs (``numpy.log1p`` in a ``FunctionTransformer``), Cython's ``__pyx_unpickle_*``
  reconstructors of those packages and scikit-learn's ``newObj`` (``cls.__new__(cls)``);
- the few reconstruction functions NumPy, pandas and ``copyreg`` pickle with (``SAFE_FUNCTIONS``);
- plain builtin containers and numbers, ``collections.OrderedDict``/``defaultdict``,
  ``functools.partial``.

``trust=True`` (``bundle pack --trust-pickle``) loads with ``joblib.load`` as it is. ``.skops`` files
load through skops' own trusted-type check: types outside skops' default trust are refused by name.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from bundlegate.errors import ModelFileError

SAFE_PACKAGES = ("sklearn", "numpy", "scipy", "pandas", "joblib", "xgboost", "lightgbm", "catboost")
REFUSED_MODULE_PARTS = frozenset(
    {
        "io",
        "testing",
        "_testing",
        "tests",
        "f2py",
        "distutils",
        "datasets",
        "_datasource",
        "ctypeslib",
        "npyio",
    }
)
# packages whose other modules hold classes with side effects (xgboost's RabitTracker listens on a port)
MODEL_MODULES = {
    "xgboost": ("xgboost.sklearn", "xgboost.core"),
    "lightgbm": ("lightgbm.sklearn", "lightgbm.basic"),
    "catboost": ("catboost.core",),
    "joblib": ("joblib.numpy_pickle",),
}
SAFE_BUILTINS = frozenset(
    {"dict", "list", "set", "frozenset", "tuple", "slice", "complex", "bytearray", "bytes", "str", "int"}
    | {"float", "bool", "range", "object", "NotImplemented", "Ellipsis"}
)
SAFE_FUNCTIONS = frozenset(
    {
        ("copyreg", "_reconstructor"),
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
        ("functools", "partial"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy.random._pickle", "__randomstate_ctor"),
        ("numpy.random._pickle", "__bit_generator_ctor"),
        ("numpy.random._pickle", "__generator_ctor"),
        ("pandas.core.indexes.base", "_new_Index"),
        ("pandas.core.internals.blocks", "new_block"),
        ("pandas._libs.internals", "_unpickle_block"),
        ("pandas.core.arrays.categorical", "_unpickle_categorical"),
    }
)


def load_pickle(path: Path, *, trust: bool = False) -> Any:
    """The object in the pickle/joblib file ``path``; ``ModelFileError`` naming a refused global."""
    import joblib

    if trust:
        return joblib.load(path)
    from joblib.numpy_pickle import NumpyUnpickler
    from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap

    class AllowlistUnpickler(NumpyUnpickler):  # type: ignore[misc]
        def find_class(self, module: str, name: str) -> Any:
            return allowed_global(module, name, path.name)

    with path.open("rb") as f, _validate_fileobject_and_memmap(f, str(path), None) as (fobj, _):
        if isinstance(fobj, str):
            raise ModelFileError(
                f"{path.name} is in the joblib format before 0.10; re-save it with a current joblib"
            )
        return AllowlistUnpickler(str(path), fobj, True, mmap_mode=None).load()


def allowed_global(module: str, name: str, file_name: str) -> Any:
    """The global ``module.name`` when a model pickle may use it, else ``ModelFileError``."""
    root = module.split(".", 1)[0]
    if module == "builtins" and name in SAFE_BUILTINS:
        return _resolve(module, name)
    if (module, name) in SAFE_FUNCTIONS:
        return _resolve(module, name)
    if root in SAFE_PACKAGES and _safe_module(module, root):
        obj = _resolve(module, name, file_name)
        if _model_part(obj, root, name):
            return obj
    raise ModelFileError(
        f"{file_name} names {module}.{name}, which is not part of a model: refusing to unpickle it "
        "(nothing from the file has run; pass --trust-pickle only if you trust where it came from)"
    )


def _safe_module(module: str, root: str) -> bool:
    """A module of a safe package outside its I/O, testing and build parts (and, for the boosting
    libraries and joblib, only the modules their models are made of)."""
    if REFUSED_MODULE_PARTS & set(module.split(".")):
        return False
    return module in MODEL_MODULES.get(root, (module,))


def _model_part(obj: Any, root: str, name: str) -> bool:
    """A class, ufunc or Cython reconstructor of the scientific package ``root``."""
    import numpy as np

    if isinstance(obj, type):
        return not issubclass(obj, np.memmap)
    if isinstance(obj, np.ufunc):
        return True
    leaf = name.rsplit(".", 1)[-1]
    if root == "sklearn" and leaf == "newObj":  # scikit-learn's Cython ``cls.__new__(cls)``
        return True
    return leaf.startswith("__pyx_unpickle_") and getattr(obj, "__module__", "").split(".")[0] == root


def _resolve(module: str, name: str, file_name: str = "") -> Any:
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        raise ModelFileError(
            f"{file_name} needs {module}.{name}, which the installed packages do not have "
            "(was it made with other library versions?)"
        ) from None
    return obj


def load_skops(path: Path, *, trust: bool = False) -> Any:
    """The object in the ``.skops`` file ``path``, refusing types skops does not trust by default."""
    try:
        import skops.io as sio
    except ImportError:
        raise ModelFileError(f"{path.name}: loading .skops files needs skops (pip install skops)") from None
    try:
        untrusted = sio.get_untrusted_types(file=path)
        if untrusted and not trust:
            raise ModelFileError(
                f"{path.name} holds types skops does not trust: {', '.join(untrusted[:6])}; "
                "pass --trust-pickle only if you trust where it came from"
            )
        return sio.load(path, trusted=untrusted or None)
    except ModelFileError:
        raise
    except Exception as exc:  # skops raises zipfile, json and its own errors
        raise ModelFileError(f"{path.name} is not a readable .skops file: {type(exc).__name__}") from None


__all__ = ["allowed_global", "load_pickle", "load_skops"]
