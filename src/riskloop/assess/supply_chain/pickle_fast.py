"""The fast path: CPython's own C unpickler, driven with inert stubs.

``find_class`` never imports: it records the name and returns a fresh stub class.
``persistent_load`` returns a stub. Calling a stub (REDUCE, INST, OBJ), instantiating it
(NEWOBJ), or giving it state (BUILD), items or elements only records and returns another
stub. Everything else the C unpickler touches is a plain value it built from the file's
literals (str, bytes, int, list, dict, ...). So the globals it asks for are exactly the ones
a real load would import, at C speed, and nothing named in the file ever runs.

Anything unusual is handed to the symbolic engine (:mod:`.pickle_vm`), which resolves it
exactly: an object imported and then modified (``BUILD`` / item assignment on a stub class),
a stub used as an import name (``STACK_GLOBAL`` from computed values), extension codes, out-of
band buffers, joblib array payloads, any error at all. The fast path only ever answers for a
pickle it loaded from its first opcode to STOP without surprises.

It also refuses to run while the process has ``copyreg`` extensions registered (an ``EXT``
opcode would then resolve through that registry without calling ``find_class``).
"""

from __future__ import annotations

import copyreg
import pickle
import time
from typing import Any

from .budgets import BudgetExceeded, Meter
from .pickle_values import JOBLIB_WRAPPERS, LATIN1, NESTED_LOADERS, GlobalUse, Nested, PickleResult

_MEMORY_CHECK_BYTES = 256 << 10


class _Escalate(Exception):
    """Hand this pickle to the symbolic engine."""


class _Reader:
    """A file object over ``buf[start:end]`` that checks the budgets as the unpickler reads."""

    def __init__(self, buf: Any, start: int, end: int, meter: Meter) -> None:
        self.buf, self.pos, self.end, self.meter = buf, start, end, meter
        self.baseline = meter.rss_baseline()
        self.next_check = start + _MEMORY_CHECK_BYTES
        self.deadline = meter.deadline

    def _tick(self) -> None:
        if time.monotonic() > self.deadline:
            self.meter.check_time()
        if self.pos >= self.next_check:
            self.next_check = self.pos + _MEMORY_CHECK_BYTES
            self.meter.check_memory(self.baseline)

    def read(self, n: int = -1) -> bytes:
        self._tick()
        stop = self.end if n is None or n < 0 else min(self.end, self.pos + n)
        out = bytes(self.buf[self.pos:stop])
        self.pos = stop
        return out

    def readinto(self, b: Any) -> int:
        self._tick()
        n = min(len(b), self.end - self.pos)
        b[:n] = self.buf[self.pos:self.pos + n]
        self.pos += n
        return n

    def peek(self, n: int = 0) -> bytes:
        return bytes(self.buf[self.pos:min(self.end, self.pos + max(n, 1))])

    def readline(self) -> bytes:
        self._tick()
        nl = self.buf.find(b"\n", self.pos, self.end)
        stop = self.end if nl < 0 else nl + 1
        out = bytes(self.buf[self.pos:stop])
        self.pos = stop
        return out


class _Hook:
    """A method on stub instances that only records; on the stub class itself it escalates."""

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            raise _Escalate(f"{self.kind} on an imported object")
        rec: _Recorder = type(obj)._rl_rec  # type: ignore[attr-defined]
        kind = self.kind
        return lambda *args: rec.on_method(obj, kind, args)


class _StubMeta(type):
    """The metaclass of stub classes: calling one records the call."""

    _rl_rec: _Recorder
    _rl_full: str

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls._rl_rec.on_call(cls, args)

    def __setitem__(cls, key: Any, value: Any) -> None:
        raise _Escalate("item assignment on an imported object")


class _StubBase(metaclass=_StubMeta):
    __slots__ = ()

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:  # NEWOBJ, NEWOBJ_EX, INST, OBJ
        return object.__new__(cls)

    __setstate__ = _Hook("BUILD")
    append = _Hook("APPEND")
    extend = _Hook("APPENDS")
    add = _Hook("ADDITEMS")

    def __setitem__(self, key: Any, value: Any) -> None:
        return None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return object.__new__(type(self)._rl_rec.result_cls)


class _Recorder:
    def __init__(self) -> None:
        self.globals: list[GlobalUse] = []
        self.nested: list[Nested] = []
        self.storage_keys: set[str] = set()
        self._classes: dict[tuple[str, str], type] = {}
        self.result_cls = self.stub("", "<call result>")
        self.pid_cls = self.stub("", "<persistent id>")

    def stub(self, module: str, name: str) -> type:
        key = (module, name)
        cls = self._classes.get(key)
        if cls is None:
            cls = _StubMeta("Stub", (_StubBase,), {"__slots__": (), "_rl_rec": self,
                                                   "_rl_full": f"{module}.{name}"})
            self._classes[key] = cls
        return cls

    def on_call(self, cls: type, args: tuple[Any, ...]) -> Any:
        full = cls._rl_full  # type: ignore[attr-defined]
        a0 = args[0] if args else None
        if full in NESTED_LOADERS and a0 is not None:
            if not isinstance(a0, bytes | bytearray):
                raise _Escalate("nested loader given a computed value")
            self.nested.append(Nested(full, bytes(a0), None))
        if full == "_codecs.encode" and isinstance(a0, str):
            codec = args[1] if len(args) > 1 else "utf-8"
            if isinstance(codec, str) and codec.lower() in LATIN1 | {"utf-8", "utf8"}:
                try:
                    return a0.encode("latin-1" if codec.lower() in LATIN1 else "utf-8")
                except UnicodeEncodeError:
                    raise _Escalate("undecodable _codecs.encode argument") from None
        return object.__new__(cls)

    def on_method(self, obj: Any, kind: str, args: tuple[Any, ...]) -> None:
        if kind == "BUILD" and type(obj)._rl_full in JOBLIB_WRAPPERS:
            raise _Escalate("joblib array data follows")
        return None


class _StubUnpickler(pickle.Unpickler):
    def __init__(self, file: _Reader, rec: _Recorder) -> None:
        super().__init__(file, fix_imports=False, encoding="latin-1")
        self._rec = rec

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - records only
        rec = self._rec
        if len(rec.globals) >= 100_000:
            raise _Escalate("too many imports for the fast path")
        rec.globals.append(GlobalUse(module, name, None, "find_class"))
        return rec.stub(module, name)

    def persistent_load(self, pid: Any) -> Any:
        rec = self._rec
        if isinstance(pid, tuple) and len(pid) > 2 and pid[0] == "storage" and isinstance(pid[2], str):
            if len(rec.storage_keys) < 1_000_000:
                rec.storage_keys.add(pid[2])
        return object.__new__(rec.pid_cls)


def registry_in_use() -> bool:
    return bool(copyreg._extension_registry or copyreg._inverted_registry  # type: ignore[attr-defined]
                or copyreg._extension_cache)  # type: ignore[attr-defined]


def fast_scan(buf: Any, start: int, end: int, *, meter: Meter) -> PickleResult | None:
    """Load the pickle at ``buf[start:end]`` with stubs; None means "use the symbolic engine".

    Budget overruns propagate as :class:`BudgetExceeded`.
    """
    if registry_in_use() or start >= end:
        return None
    rec = _Recorder()
    reader = _Reader(buf, start, end, meter)
    try:
        _StubUnpickler(reader, rec).load()
    except BudgetExceeded:
        raise
    except Exception:  # any surprise (incl. _Escalate): the symbolic engine decides
        return None
    proto = buf[start + 1] if buf[start] == 0x80 and start + 1 < end else 0
    r = PickleResult(start=start, end=reader.pos, engine="c", complete=True, proto=proto,
                     globals=rec.globals, nested=rec.nested,
                     storage_keys=rec.storage_keys)
    return r
