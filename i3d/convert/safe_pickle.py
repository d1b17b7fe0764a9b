"""A pickle reader that admits numpy arrays and nothing else.

Unpickling can call any importable function; :class:`NumpyUnpickler`
resolves only the three globals that a pickled ``numpy.ndarray`` needs
(``_reconstruct``, ``ndarray``, ``dtype``) and refuses every other one,
naming it, before anything is called. :func:`load_numpy_tree` then checks
that what was built is nested ``dict``\\ s of numeric arrays.
"""

from __future__ import annotations

import importlib
import io
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["RefusedPickle", "NumpyUnpickler", "load_numpy_tree", "ADMITTED"]

# numpy 2 moved numpy.core to numpy._core; pickles name either.
_RECONSTRUCT_MODULES = ("numpy.core.multiarray", "numpy._core.multiarray")
ADMITTED = frozenset(
    [(module, "_reconstruct") for module in _RECONSTRUCT_MODULES] + [("numpy", "ndarray"), ("numpy", "dtype")]
)
# Array element kinds that hold plain numbers: bool, signed, unsigned, float.
_NUMERIC_KINDS = "biuf"


class RefusedPickle(pickle.UnpicklingError):
    """The pickle references something other than numpy arrays."""


def _reconstruct() -> Callable[..., np.ndarray]:
    for module in reversed(_RECONSTRUCT_MODULES):  # the current name first
        try:
            return importlib.import_module(module)._reconstruct
        except (ImportError, AttributeError):
            continue
    raise RefusedPickle("this numpy has no multiarray._reconstruct")


class NumpyUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose globals are limited to :data:`ADMITTED`."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ADMITTED:
            raise RefusedPickle(f"refused to load {module}.{name}: only numpy arrays are admitted")
        if name == "_reconstruct":
            return _reconstruct()
        return getattr(np, name)

    def persistent_load(self, pid: Any) -> Any:
        raise RefusedPickle("refused a persistent id: only numpy arrays are admitted")


def _check_tree(node: Any, path: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                raise RefusedPickle(f"{path or 'the top level'}: key {key!r} is not a string")
            _check_tree(value, f"{path}/{key}" if path else key)
    elif isinstance(node, np.ndarray):
        if type(node) is not np.ndarray or node.dtype.kind not in _NUMERIC_KINDS:
            raise RefusedPickle(f"{path}: an array of dtype {node.dtype}, not numbers")
    else:
        raise RefusedPickle(f"{path or 'the top level'}: a {type(node).__name__}, not a dict or a numpy array")


def load_numpy_tree(data: bytes) -> dict[str, Any]:
    """Unpickle nested ``dict``\\ s of numeric numpy arrays (e.g. Flax variables).

    Raises:
        RefusedPickle: a global other than numpy's array constructors (named),
            or a value that is not a dict, a string key or a numeric array.
        pickle.UnpicklingError, EOFError, ValueError: a malformed pickle.
    """
    tree = NumpyUnpickler(io.BytesIO(data)).load()
    if not isinstance(tree, dict):
        raise RefusedPickle(f"the top level is a {type(tree).__name__}, not a dict")
    _check_tree(tree, "")
    return tree
