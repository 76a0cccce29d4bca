"""The allow-list that judges model files without loading them, shared by registry and scoring.

The registry scans an artifact before accepting it; scoring judges it again right before loading
(defence in depth: the bytes on disk may not be the bytes that were scanned). One allow-list:
classes from sklearn, numpy (arrays, dtypes, scalars, random generators) and scipy.sparse, numpy
ufuncs, Cython unpickle helpers, the numpy/copyreg reconstructors and the safe builtin containers.
A pickle calls what it references, so a function outside that list (`os.system`, `builtins.eval`,
`numpy.load`...) is untrusted. What cannot be parsed completely is Unscannable.
"""

from __future__ import annotations

import _compat_pickle
import importlib
import pickletools
from collections.abc import Iterator
from typing import BinaryIO

TRUSTED_ROOTS = ("sklearn", "numpy", "scipy.sparse")
TRUSTED_NAMES = frozenset(
    [f"builtins.{n}" for n in ("dict", "list", "set", "frozenset", "tuple", "bytes", "bytearray", "str",
                               "int", "float", "complex", "bool", "slice", "range", "object")]
    + [
        "collections.OrderedDict",
        "_codecs.encode",  # how protocol 2 pickles bytes
        "copyreg._reconstructor",
        "numpy.core.multiarray._reconstruct",
        "numpy._core.multiarray._reconstruct",
        "numpy.core.multiarray.scalar",
        "numpy._core.multiarray.scalar",
        "numpy.core.numeric._frombuffer",
        "numpy._core.numeric._frombuffer",
        "numpy.random._pickle.__randomstate_ctor",
        "numpy.random._pickle.__bit_generator_ctor",
        "numpy.random._pickle.__generator_ctor",
    ]
)


class Unscannable(ValueError):
    """The bytes could not be parsed completely, so they cannot be judged."""


def pickle_globals(fp: BinaryIO) -> list[str]:
    """Every `module.name` the pickle would import, in order; raises Unscannable."""
    found: list[str] = []
    try:
        for module, name in _walk(fp):
            found.append(f"{module}.{name}")
    except Unscannable:
        raise
    except Exception as exc:  # noqa: BLE001 - genops raises ValueError, EOFError, struct.error...
        raise Unscannable(str(exc) or type(exc).__name__) from exc
    if fp.read(1):
        raise Unscannable(f"data follows the pickle's STOP opcode at byte {fp.tell() - 1}")
    return found


STRING_OPS = {"UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8", "STRING", "BINSTRING",
              "SHORT_BINSTRING"}
GET_OPS = {"GET", "BINGET", "LONG_BINGET"}
PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}
NO_STACK_EFFECT = {"PROTO", "FRAME"}
REFUSED_OPS = {"EXT1", "EXT2", "EXT4", "PERSID", "BINPERSID"}


def _walk(fp: BinaryIO) -> Iterator[tuple[str, str]]:
    """Yield (module, name) per import, tracking which strings STACK_GLOBAL takes off the stack.

    `recent` mirrors the top of the stack only as far as it matters: the value each op pushed if
    it is a string, else None. STACK_GLOBAL on anything but two known strings is unscannable.
    """
    protocol = 0
    memo: dict[int, str | None] = {}
    recent: list[str | None] = []
    for op, arg, pos in pickletools.genops(fp):
        name = op.name
        if name == "PROTO":
            protocol = arg
        if name in REFUSED_OPS:
            raise Unscannable(f"opcode {name} at byte {pos} (extension registry / persistent ids)")
        if name in NO_STACK_EFFECT:
            continue
        if name in PUT_OPS:
            memo[arg] = recent[-1] if recent else None
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in STRING_OPS:
            recent.append(arg if isinstance(arg, str) else None)
        elif name in GET_OPS:
            recent.append(memo.get(arg))
        elif name in ("GLOBAL", "INST"):
            module, _, attr = arg.partition(" ")
            yield _fix_imports(module, attr, protocol)
            recent.append(None)
        elif name == "STACK_GLOBAL":
            module, attr = (recent[-2], recent[-1]) if len(recent) >= 2 else (None, None)
            if not (isinstance(module, str) and isinstance(attr, str)):
                raise Unscannable(f"STACK_GLOBAL at byte {pos} takes values that are not literal strings")
            yield module, attr
            recent.append(None)
        else:
            recent.append(None)
        del recent[:-2]


def _fix_imports(module: str, name: str, protocol: int) -> tuple[str, str]:
    # What the unpickler does for protocol < 3 (Python 2 names such as __builtin__).
    if protocol < 3:
        if (module, name) in _compat_pickle.NAME_MAPPING:
            return _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    return module, name


def is_trusted(qualified: str) -> bool:
    """`module.name` is on the allow-list; only modules under TRUSTED_ROOTS are ever imported."""
    if qualified in TRUSTED_NAMES:
        return True
    resolved = _resolve(qualified)
    # Attribute paths can lead out of a trusted module (`sklearn.base.np`, `....os.system`): judge
    # the object by where it is defined, not by the path that reached it.
    if resolved is None or not _under_roots(getattr(resolved, "__module__", None) or ""):
        return False
    import numpy as np

    if isinstance(resolved, type):
        return _trusted_class(resolved)
    if isinstance(resolved, np.ufunc):
        return True
    return qualified.rsplit(".", 1)[-1].startswith("__pyx_unpickle_") and callable(resolved)


def _trusted_class(cls: type) -> bool:
    import numpy as np

    if cls.__module__.split(".")[0] != "numpy":
        return True
    if issubclass(cls, np.memmap):  # constructing one opens (and may create) a file
        return False
    return issubclass(cls, np.ndarray | np.dtype | np.generic) or cls.__module__.startswith("numpy.random")


def _under_roots(module: str) -> bool:
    return any(module == root or module.startswith(root + ".") for root in TRUSTED_ROOTS)


def _resolve(qualified: str) -> object | None:
    parts = qualified.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        if not _under_roots(module):
            continue
        try:
            obj: object = importlib.import_module(module)
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return None
        return obj
    return None

