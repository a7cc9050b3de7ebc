"""The values of the symbolic pickle machine and what it reports (see :mod:`.pickle_vm`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .budgets import BudgetExceeded

CAP = 1024  # items kept per container (the rest is counted, not stored)
BIG_STR = 1 << 16
LATIN1 = frozenset({"latin1", "latin-1", "iso-8859-1", "iso8859-1", "l1"})
NESTED_LOADERS = frozenset({
    "pickle.loads", "_pickle.loads", "cPickle.loads", "dill.loads", "cloudpickle.loads",
    "torch.storage._load_from_bytes", "numpy.loads", "joblib.load", "torch.load",
    "pickle.load", "_pickle.load",
})
JOBLIB_WRAPPERS = frozenset({
    "joblib.numpy_pickle.NumpyArrayWrapper",
    "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
})


class G:
    """An object a load would import (module attribute)."""

    __slots__ = ("module", "name", "path")

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name, self.path = module, name, f"{module}.{name}"


class Obj:
    """The result of calling or instantiating something while loading."""

    __slots__ = ("func", "args", "state", "kind")

    def __init__(self, func: Any, args: Any, kind: str) -> None:
        self.func, self.args, self.state, self.kind = func, args, None, kind


class Unk:
    """A value the scanner cannot know (persistent id, extension code, missing memo slot)."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why


class Blob:
    """A bytes literal, kept as a window into the scanned buffer (no copy)."""

    __slots__ = ("buf", "start", "end")

    def __init__(self, buf: Any, start: int, end: int) -> None:
        self.buf, self.start, self.end = buf, start, end

    def tobytes(self) -> bytes:
        return bytes(self.buf[self.start:self.end])


class BigStr:
    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


class D(list):  # type: ignore[type-arg]
    """A dict, as (key, value) pairs."""


class S(list):  # type: ignore[type-arg]
    """A set or frozenset."""


@dataclass
class GlobalUse:
    module: str
    name: str
    offset: int | None
    via: str


@dataclass
class Anomaly:
    rule: str
    verdict: str
    title: str
    detail: str
    offset: int | None


@dataclass
class Nested:
    loader: str
    data: bytes | Blob
    offset: int | None


@dataclass
class PickleResult:
    start: int
    end: int = 0
    engine: str = "vm"
    complete: bool = False
    error: str | None = None
    error_offset: int | None = None
    proto: int = 0
    opcodes: int = 0
    quota_hit: bool = False
    budget: BudgetExceeded | None = None
    value: Any = None
    globals: list[GlobalUse] = field(default_factory=list)
    anomalies: list[Anomaly] = field(default_factory=list)
    nested: list[Nested] = field(default_factory=list)
    storage_keys: set[str] = field(default_factory=set)
    joblib_arrays: int = 0

    @property
    def looks_like_pickle(self) -> bool:
        """Parsed to STOP, or decoded at least one import (what a scanner must not ignore)."""
        return self.complete or bool(self.globals) or any(a.verdict == "malicious" for a in self.anomalies)


class StopParse(Exception):
    """The pickle cannot be parsed further (a real load fails here too)."""


def describe(v: Any) -> str:
    if isinstance(v, Obj):
        f = v.func
        return f"the result of calling {f.path}" if isinstance(f, G) else "a value computed while loading"
    if isinstance(v, G):
        return f"the object {v.path}"
    if isinstance(v, Unk):
        return f"an unknown value ({v.why})"
    kind = {D: "dict", S: "set", Blob: "bytes", BigStr: "str"}.get(type(v), type(v).__name__)
    return f"a {kind} ({v!r})" if isinstance(v, int | float | bool) else f"a {kind}"


_TYPESTR = re.compile(r"^[<>|=]?[A-Za-z?][A-Za-z0-9]{0,7}$")


def dtype_info(dtype: Any) -> tuple[bool, int] | None:
    """(has objects, item size) of a pickled ``numpy.dtype`` symbol, or None."""
    if not (isinstance(dtype, Obj) and isinstance(dtype.func, G) and dtype.func.path == "numpy.dtype"):
        return None
    args = dtype.args if isinstance(dtype.args, tuple) else ()
    typestr = args[0] if args and isinstance(args[0], str) else None
    state = dtype.state if isinstance(dtype.state, tuple) else ()
    flags = state[7] if len(state) > 7 and isinstance(state[7], int) else 0
    if typestr is None or not _TYPESTR.match(typestr):
        return None
    hasobject = typestr.lstrip("<>|=").startswith("O") or bool(flags & 1)
    size = state[5] if len(state) > 5 and isinstance(state[5], int) and state[5] > 0 else 0
    if not size:
        import numpy as np

        try:
            size = int(np.dtype(typestr).itemsize)
        except (TypeError, ValueError):
            return None
    return hasobject, size
