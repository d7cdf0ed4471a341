"""Which Python objects a model file may reference: judged by what a name resolves
to."""

from __future__ import annotations

import copyreg
import importlib
from collections.abc import Iterable
from functools import lru_cache

from app.registry.errors import UnsafeModelError

# Packages that may be imported at all while resolving a reference. Importing
# any other module could itself run code, so nothing else is ever imported.
IMPORTABLE_ROOTS = frozenset(
    {"sklearn", "numpy", "scipy", "joblib", "builtins", "collections", "_codecs"}
)
# Python 2 names that pickle protocols 0-2 use for builtins.
PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


@lru_cache(maxsize=1)
def _approved_objects() -> tuple[frozenset[int], tuple[type, ...]]:
    """Objects (by identity) and base classes that model files may use."""
    import collections

    import joblib.numpy_pickle
    import numpy as np
    import numpy.random._pickle as np_random_pickle
    import scipy.sparse
    from numpy.random import bit_generator
    from sklearn._loss.link import BaseLink, Interval
    from sklearn._loss.loss import BaseLoss
    from sklearn.base import BaseEstimator
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.metrics import DistanceMetric
    from sklearn.tree._tree import Tree

    functions = [
        np._core.multiarray._reconstruct,
        np._core.multiarray.scalar,
        np._core.numeric._frombuffer,
        np_random_pickle.__randomstate_ctor,
        np_random_pickle.__generator_ctor,
        np_random_pickle.__bit_generator_ctor,
        bit_generator.__pyx_unpickle_SeedSequence,
        joblib.numpy_pickle.NumpyArrayWrapper,
        # Plain data containers and the bytes decoder pickle protocol 2 uses.
        bytes,
        bytearray,
        set,
        frozenset,
        complex,
        slice,
        range,
        collections.OrderedDict,
        collections.defaultdict,
        importlib.import_module("_codecs").encode,
        np.ndarray,
        np.dtype,
        np.random.RandomState,
        np.random.Generator,
        bit_generator.SeedSequence,
        # The base pickle protocols 0-1 name for plain classes; object() is inert.
        object,
    ]
    bases: tuple[type, ...] = (
        BaseEstimator,
        BaseLoss,
        BaseLink,
        Interval,
        Tree,
        TreePredictor,
        DistanceMetric,
        np.generic,
        np.dtype,
        bit_generator.BitGenerator,
        scipy.sparse.sparray,
        scipy.sparse.spmatrix,
    )
    return frozenset(id(f) for f in functions), bases


# scikit-learn's compiled helper modules: every class defined in them is a pure
# computational type (losses, trees, distance metrics) that fitted estimators
# hold. Matched on the class's own __module__, exactly.
SKLEARN_HELPER_MODULES = frozenset(
    {
        "sklearn._loss._loss",
        "sklearn.tree._tree",
        "sklearn.metrics._dist_metrics",
        "sklearn.neighbors._kd_tree",
        "sklearn.neighbors._ball_tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor",
    }
)


def _is_sklearn_reconstructor(obj: object) -> bool:
    """Cython's pickle helpers in scikit-learn only recreate their own class."""
    name = getattr(obj, "__name__", "")
    module = getattr(obj, "__module__", "") or ""
    return module.split(".")[0] == "sklearn" and (
        name == "newObj" or name.startswith("__pyx_unpickle_")
    )


# What protocols 0-1 may name as the builtin base of a reconstructed class.
RECONSTRUCTOR_BASES = (
    object,
    dict,
    list,
    tuple,
    set,
    frozenset,
    int,
    float,
    str,
    bytes,
)


def checked_reconstructor(cls: type, base: type, state: object) -> object:
    """``copyreg._reconstructor`` (pickle protocols 0-1) for allowed classes only.

    ``cls`` already went through ``find_class`` and the policy; ``base`` must be
    ``object`` or a plain builtin type ``cls`` derives from, so the call can only
    make an instance of an allowed class, as protocol 2's NEWOBJ does.
    """
    if (
        not isinstance(cls, type)
        or base not in RECONSTRUCTOR_BASES
        or not issubclass(cls, base)
    ):
        raise UnsafeModelError(
            "copyreg._reconstructor",
            f"it may only rebuild an allowed class from a builtin "
            f"base, not {cls!r} from {base!r}",
        )
    return copyreg._reconstructor(cls, base, state)


def _resolve(module: str, name: str) -> object:
    """Import ``module`` (already known to be importable) and walk a dotted name."""
    obj: object = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def judge(module: str, name: str, trusted_modules: Iterable[str] = ()) -> object:
    """Return the object ``module.name`` refers to if policy allows it, else raise.

    The decision looks at the object itself (its identity, class hierarchy and
    defining module), never at the name a file used to reach it, so that
    ``numpy.f2py.os.system`` is refused exactly like ``os.system``.
    """
    module = PY2_MODULES.get(module, module)
    reference = f"{module}.{name}"
    if reference == "copyreg._reconstructor":  # judged again when called
        return checked_reconstructor
    trusted = frozenset(trusted_modules)
    root = module.split(".")[0]
    trusted_roots = {m.split(".")[0] for m in trusted}
    if root not in IMPORTABLE_ROOTS and root not in trusted_roots:
        raise UnsafeModelError(reference)
    try:
        obj = _resolve(module, name)
    except (ImportError, AttributeError) as exc:
        raise UnsafeModelError(reference, "it does not exist here") from exc
    if is_allowed(obj, trusted):
        return obj
    raise UnsafeModelError(reference)


def is_allowed(obj: object, trusted_modules: frozenset[str] = frozenset()) -> bool:
    """True when ``obj`` is an approved class or reconstruction function."""
    functions, bases = _approved_objects()
    if id(obj) in functions:
        return True
    defining_module = getattr(obj, "__module__", None) or ""
    if isinstance(obj, type):
        if (
            defining_module in trusted_modules
            or defining_module in SKLEARN_HELPER_MODULES
        ):
            return True
        return issubclass(obj, bases) and defining_module.split(".")[0] in {
            "sklearn",
            "numpy",
            "scipy",
        }
    if callable(obj) and defining_module in trusted_modules:
        return True
    return _is_sklearn_reconstructor(obj)
