"""The one way hpcgan reads a pickle it did not write itself (CIFAR batches, ImageNet-style batch
files, anything a user hands over): :func:`load_plain`.

Unpickling an arbitrary file runs code: a pickle may name any importable callable (``os.system``,
``builtins.eval``) and call it while loading. :class:`PlainUnpickler` resolves only the names that
rebuild plain data, so a file can yield nothing but

* containers: dict, list, tuple, set, frozenset (and ``collections.OrderedDict``);
* bytes, bytearray, str, bool, int, float, complex, None;
* numpy arrays, dtypes and numpy scalars (numeric, bool, bytes or str dtypes; no object arrays).

Any other name in the file is refused with a UsageError naming the file and the name; nothing of
the file's own is run. Truncated or malformed files are a UsageError too.
"""
from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import UsageError

#: (module, name) pairs a plain-data pickle may name. Protocols 0-2 say __builtin__ for builtins;
#: numpy 1.x says numpy.core, 2.x numpy._core (_frombuffer: protocol 5 arrays); _codecs.encode is
#: how protocol 2 stores bytes written by Python 3 (it looks up stdlib codecs only).
_PLAIN = ("dict", "list", "tuple", "set", "frozenset", "bytes", "bytearray", "str", "int", "float", "complex", "bool")
ALLOWED = ({(mod, n) for mod in ("builtins", "__builtin__") for n in _PLAIN}
           | {(f"numpy.{core}.{mod}", n) for core in ("core", "_core")
              for mod, n in (("multiarray", "_reconstruct"), ("multiarray", "scalar"), ("numeric", "_frombuffer"))}
           | {("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"), ("_codecs", "encode"),
              ("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor")})


class PlainUnpickler(pickle.Unpickler):
    """An Unpickler that resolves only :data:`ALLOWED` names (see the module docstring)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}")

    def load(self) -> Any:
        obj = super().load()
        _check_arrays(obj)
        return obj


def _check_arrays(obj: Any, depth: int = 0) -> None:
    """Refuse object arrays (their items could only have come from allowed names, but a reader may
    not expect them) and containers nested absurdly deep."""
    if depth > 100:
        raise pickle.UnpicklingError("it nests containers more than 100 deep")
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        raise pickle.UnpicklingError("it holds an object array")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_arrays(k, depth + 1)
            _check_arrays(v, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            _check_arrays(v, depth + 1)


def load_plain(source: str | Path | BinaryIO, encoding: str = "bytes", what: str = "pickle") -> Any:
    """The plain data in a pickle file (a path or an open binary file). ``encoding`` applies to
    Python 2 strings ("bytes" keeps them bytes, as CIFAR's page recommends). UsageError, naming
    the file, for anything else or a damaged file."""
    name = str(source) if isinstance(source, (str, Path)) else getattr(source, "name", "<stream>")
    try:
        if isinstance(source, (str, Path)):
            with open(source, "rb") as f:
                return PlainUnpickler(f, encoding=encoding).load()
        return PlainUnpickler(source, encoding=encoding).load()
    except pickle.UnpicklingError as e:
        if str(e).startswith("it "):
            raise UsageError(f"refusing {what} {name}: {e}, and only plain data (containers, bytes, str, numbers, "
                             "numpy arrays) is read from pickles, as anything else could run code") from None
        raise UsageError(f"{name}: cannot read {what} (UnpicklingError: {e})") from None
    except OSError:
        raise
    except Exception as e:  # truncated or not a pickle: EOFError, ValueError, TypeError, RecursionError, ...
        raise UsageError(f"{name}: cannot read {what} ({type(e).__name__}: {e})") from None
