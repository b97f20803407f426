"""Loading a pickle, joblib or skops file without running what it names, unless the user trusts it.

A pickle is a program: every global it names (``posix.system``, ``builtins.eval``, ...) can be called
with any arguments while it loads, and later by the model it builds (a ``FunctionTransformer``'s
``func``). ``load_pickle`` runs joblib's unpickler (plain pickles load through it too) with
``find_class`` limited to what fitted models are made of, and refuses the file at the first other global,
naming it, before anything from the file has been called:

- classes of the scientific stack (``SAFE_PACKAGES``: scikit-learn, NumPy, SciPy, pandas, joblib,
  XGBoost, LightGBM, CatBoost), outside their I/O, testing, build and evaluation modules (of the
  boosting libraries and joblib only the modules their models are made of, ``MODEL_MODULES``). The
  module written in the pickle and the one the class really comes from must both qualify, and so must
  every base class (a few harmless standard-library bases aside), so a re-export (``pandas.HDFStore``,
  a ``Listener`` a module imports) or a subclass of ``threading.Thread`` is refused; so are
  ``REFUSED_CLASSES`` (``numpy.memmap`` writes files) and their subclasses;
- NumPy ufuncs with numeric loops (not ``frompyfunc`` wrappers of Python functions), Cython's
  ``__pyx_unpickle_*`` reconstructors of those packages and scikit-learn's ``newObj``
  (``cls.__new__(cls)``);
- the few reconstruction functions NumPy, pandas and ``copyreg`` pickle with (``SAFE_FUNCTIONS``);
- plain builtin containers and numbers, ``collections.OrderedDict``/``defaultdict``.

A name is one attribute of its module: a dotted name (``os.system`` inside ``pandas``) is refused. A
global is never given state (``BUILD``): that would set attributes of a class for the whole process.
Object arrays inside joblib files are read by the same unpickler, whatever the joblib version.

``trust=True`` (``bundle pack --trust-pickle``) loads with ``joblib.load`` as it is. ``.skops`` files
load through skops' own trusted-type check: types outside skops' default trust are refused by name.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pickle
import sys
from pathlib import Path
from typing import Any

from bundlegate.errors import ModelFileError

SAFE_PACKAGES = ("sklearn", "numpy", "scipy", "pandas", "joblib", "xgboost", "lightgbm", "catboost")
REFUSED_MODULE_PARTS = frozenset(
    {
        "io",
        "f2py",
        "distutils",
        "datasets",
        "_datasource",
        "ctypeslib",
        "npyio",
        "_npyio_impl",
        "format",
        "_format_impl",
        "_lib",  # SciPy's internals: process pools, native callbacks
        "_internal",  # NumPy's ctypes helpers
        "odr",  # ODR(overwrite=True) deletes its report files
        "_scorer",  # a scorer calls any method it is given the name of (XGBModel.save_model)
        "computation",  # pandas.eval
        "_config",  # pandas options, locales
        "plotting",  # plotting backends load by entry point
    }
)
# packages whose other modules hold classes with side effects (xgboost's RabitTracker listens on a port)
MODEL_MODULES = {
    "xgboost": ("xgboost.sklearn", "xgboost.core"),
    "lightgbm": ("lightgbm.sklearn", "lightgbm.basic"),
    "catboost": ("catboost.core",),
    "joblib": ("joblib.numpy_pickle",),
}
# classes of safe modules with side effects when built or called (refused with their subclasses)
REFUSED_CLASSES = frozenset(
    {
        "numpy.memmap",
        "joblib.numpy_pickle.NumpyPickler",
        "joblib.numpy_pickle.NumpyUnpickler",
        "pandas.core.groupby.groupby.GroupByPlot",  # plotting imports a backend module by name
    }
)
SAFE_BUILTINS = frozenset(
    {"dict", "list", "set", "frozenset", "tuple", "slice", "complex", "bytearray", "bytes", "str", "int"}
    | {"float", "bool", "range", "object", "NotImplemented", "Ellipsis"}
)
# standard-library modules whose classes may be bases of a model's class (no I/O, threads or sockets)
SAFE_BASE_MODULES = frozenset({"abc", "_collections_abc", "collections.abc", "numbers", "enum", "typing"})
SAFE_FUNCTIONS = frozenset(
    {
        ("copyreg", "_reconstructor"),
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
        ("collections", "defaultdict"),
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
    from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap

    with path.open("rb") as f, _validate_fileobject_and_memmap(f, str(path), None) as (fobj, _):
        if isinstance(fobj, str):
            raise ModelFileError(
                f"{path.name} is in the joblib format before 0.10; re-save it with a current joblib"
            )
        return _unpickler_class()(str(path), fobj, True, mmap_mode=None).load()


@functools.cache
def _unpickler_class() -> type:
    """joblib's unpickler with the allowlist, and no state given to a global."""
    from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler

    def check_build(unpickler: Any, file_name: str) -> None:
        target = unpickler.stack[-2]
        if id(target) in unpickler.global_ids:
            raise ModelFileError(
                f"{file_name} sets attributes of {_where(target)}, which a model never does: refusing "
                "to unpickle it (pass --trust-pickle only if you trust where it came from)"
            )

    class NestedUnpickler(pickle._Unpickler):
        """The pickle stream of a joblib object array, under the outer file's allowlist."""

        dispatch = pickle._Unpickler.dispatch.copy()

        def __init__(self, outer: Any) -> None:
            super().__init__(outer.file_handle)
            self.outer, self.global_ids = outer, outer.global_ids

        def find_class(self, module: str, name: str) -> Any:
            return self.outer.find_class(module, name)

        def load_build(self) -> None:
            check_build(self, Path(self.outer.filename).name)
            pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]

        dispatch[pickle.BUILD[0]] = load_build  # type: ignore[assignment]

    class AllowlistUnpickler(NumpyUnpickler):  # type: ignore[misc]
        dispatch = NumpyUnpickler.dispatch.copy()

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.global_ids: set[int] = set()

        def find_class(self, module: str, name: str) -> Any:
            obj = allowed_global(module, name, Path(self.filename).name)
            self.global_ids.add(id(obj))  # globals live as long as their modules: ids stay theirs
            return obj

        def load_build(self) -> None:
            check_build(self, Path(self.filename).name)
            if not isinstance(self.stack[-2], NumpyArrayWrapper):
                NumpyUnpickler.load_build(self)
                return
            pickle._Unpickler.load_build(self)  # type: ignore[attr-defined]  # dtype, shape, order
            if self.stack[-1].dtype.hasobject:  # older joblib reads these with pickle.load
                self.stack[-1] = NestedUnpickler(self).load()
            else:
                self.stack.append({})  # no more state: joblib reads the numbers in its own way
                NumpyUnpickler.load_build(self)

        dispatch[pickle.BUILD[0]] = load_build

    return AllowlistUnpickler


def allowed_global(module: str, name: str, file_name: str) -> Any:
    """The global ``module.name`` when a model pickle may use it, else ``ModelFileError``."""
    if (module, name) in SAFE_FUNCTIONS or (module == "builtins" and name in SAFE_BUILTINS):
        return _resolve(module, name, file_name)
    obj: Any = None
    root = module.split(".", 1)[0]
    if "." not in name and root in SAFE_PACKAGES and _safe_module(module):
        obj = _resolve(module, name, file_name)
        if _model_part(obj, root, name):
            return obj
    real = f" (that is {_where(obj)})" if obj is not None and _where(obj) != f"{module}.{name}" else ""
    raise ModelFileError(
        f"{file_name} names {module}.{name}{real}, which is not part of a model: refusing to unpickle "
        "it (nothing from the file has run; pass --trust-pickle only if you trust where it came from)"
    )


def _safe_module(module: str) -> bool:
    """A module of a safe package outside its I/O, test, build and evaluation parts (and, for the
    boosting libraries and joblib, only the modules their models are made of)."""
    root = module.split(".", 1)[0]
    parts = module.split(".")
    if root not in SAFE_PACKAGES or REFUSED_MODULE_PARTS & set(parts) or any("test" in p for p in parts):
        return False
    return module in MODEL_MODULES.get(root, (module,))


def _model_part(obj: Any, root: str, name: str) -> bool:
    """A class, numeric ufunc or Cython reconstructor of the scientific packages, from where it says."""
    import numpy as np

    if isinstance(obj, type):
        return all(_safe_class(c) for c in obj.__mro__)
    if isinstance(obj, np.ufunc):  # a frompyfunc ufunc has object loops only: it calls Python
        return any("O" not in t for t in obj.types)
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str) or not _safe_module(module):
        return False
    if root == "sklearn" and name == "newObj":  # scikit-learn's Cython ``cls.__new__(cls)``
        return module.split(".", 1)[0] == "sklearn"
    return name.startswith("__pyx_unpickle_") and module.split(".", 1)[0] == root


def _safe_class(cls: type) -> bool:
    """A class of a safe module, or a harmless base. NumPy and pandas set ``__module__`` to where a class
    is exported (``pandas.HDFStore``), so the file its methods are written in must be safe too."""
    module = cls.__module__
    if module == "builtins":
        return cls is object or cls.__name__ in SAFE_BUILTINS
    if module in SAFE_BASE_MODULES:
        return True
    if not _safe_module(module) or f"{module}.{cls.__qualname__}" in REFUSED_CLASSES:
        return False
    source = _source_module(cls)
    return source is None or _safe_module(source)


def _source_module(cls: type) -> str | None:
    """The module whose file holds the methods written in ``cls``'s body (None: no Python methods)."""
    for value in vars(cls).values():
        function = inspect.unwrap(getattr(value, "__func__", value)) if callable(value) else value
        code = getattr(function, "__code__", None)
        if code is None or code.co_filename.startswith("<"):  # generated: a dataclass __init__
            continue
        if not getattr(function, "__qualname__", "").startswith(f"{cls.__qualname__}."):
            continue
        return _module_of_file(Path(code.co_filename))
    return None


def _module_of_file(path: Path) -> str:
    """The module a source file is, within the safe packages; else the path (never a safe module).
    Cython records paths relative to the package's parent folder (``sklearn/tree/_tree.pyx``)."""
    for root in SAFE_PACKAGES:
        package = sys.modules.get(root)
        folder = Path(package.__file__).parent if package and package.__file__ else None
        if folder and path.is_absolute() and path.is_relative_to(folder):
            path = path.relative_to(folder.parent)
    if path.is_absolute() or ".." in path.parts:
        return str(path)
    return ".".join(p for p in path.with_suffix("").parts if p != "__init__")


def _where(obj: Any) -> str:
    """Where ``obj`` is defined: ``module.qualname`` as the object itself says."""
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return f"{module}.{getattr(obj, '__qualname__', None) or type(obj).__qualname__}"


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
