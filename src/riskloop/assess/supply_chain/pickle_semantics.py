"""What the symbolic pickle machine does on imports, calls and state (see :mod:`.pickle_vm`).

Import resolution honours values planted by ``BUILD`` on imported objects; calls record
nested pickles handed to loaders and evaluate ``_codecs.encode`` with a fixed codec table
(how protocol 2 writes bytes); joblib's array payloads are followed byte for byte.
"""

from __future__ import annotations

from typing import Any

from .budgets import Budgets, Meter
from .pickle_values import (
    LATIN1,
    NESTED_LOADERS,
    Anomaly,
    Blob,
    D,
    G,
    GlobalUse,
    Nested,
    Obj,
    PickleResult,
    StopParse,
    Unk,
    describe,
    dtype_info,
)


class Semantics:
    """Shared by every :class:`~.pickle_vm.PickleVM`: budgets, meter and nesting depth."""

    def __init__(self, *, budgets: Budgets, meter: Meter, depth: int = 0) -> None:
        self.budgets, self.meter, self.depth = budgets, meter, depth

    # -- helpers ---------------------------------------------------------------------------
    def _line(self, buf: Any, pos: int, end: int) -> tuple[bytes, int]:
        nl = buf.find(b"\n", pos, end)
        if nl < 0:
            raise StopParse("a text argument has no end of line (truncated)")
        return bytes(buf[pos:nl]), nl + 1

    def _global(self, r: PickleResult, overlay: dict[str, dict[str, Any]], module: str,
                name: str, via: str, at: int) -> Any:
        r.globals.append(GlobalUse(module, name, at, via))
        if not overlay:
            return G(module, name)
        path, parts = module, name.split(".")
        for i, part in enumerate(parts):
            planted = overlay.get(path, {})
            if part in planted:
                value = planted[part]
                if i == len(parts) - 1:
                    return value
                if not isinstance(value, G):
                    return Unk("attribute of a planted value")
                path = value.path
            else:
                path = f"{path}.{part}"
        return G(module, name)

    def _anomaly(self, r: PickleResult, rule: str, verdict: str, title: str, detail: str,
                 at: int | None) -> None:
        if len(r.anomalies) < 1000:
            r.anomalies.append(Anomaly(rule, verdict, title, detail, at))

    def _call(self, r: PickleResult, func: Any, args: Any, at: int) -> Any:
        if isinstance(func, G):
            a0 = args[0] if isinstance(args, tuple) and args else None
            if func.path in NESTED_LOADERS:
                if isinstance(a0, Blob | bytes):
                    r.nested.append(Nested(func.path, a0, at))
                elif a0 is not None:
                    self._anomaly(r, "malformed", "needs-trust",
                                  f"{func.path} is given data computed while loading",
                                  f"the nested serialized data is {describe(a0)}; it was not inspected", at)
            if func.path == "_codecs.encode" and isinstance(a0, str):
                codec = args[1] if len(args) > 1 else "utf-8"
                if isinstance(codec, str) and codec.lower() in LATIN1 | {"utf-8", "utf8"}:
                    try:
                        return a0.encode("latin-1" if codec.lower() in LATIN1 else "utf-8")
                    except UnicodeEncodeError:
                        return Unk("undecodable _codecs.encode argument")
            return Obj(func, args, "call")
        if isinstance(func, Obj | Unk):
            return Obj(func, args, "call")
        self._anomaly(r, "malformed", "needs-trust", "a call on a value that is not callable",
                      f"REDUCE on {describe(func)}: a real load stops here", at)
        return Unk("call on a non-callable")

    def _mutation(self, r: PickleResult, target: G, what: str, at: int) -> None:
        self._anomaly(r, "global-mutation", "malicious",
                      f"{what} changes the imported object {target.path}",
                      "a pickle that modifies a module or class while loading can redirect "
                      "later imports (a known scanner bypass)", at)

    def _joblib_payload(self, r: PickleResult, buf: Any, wrapper: Obj, pos: int, end: int,
                        at: int) -> int:
        """Skip (or scan) the array data joblib writes right after a NumpyArrayWrapper."""
        state = dict(kv for kv in wrapper.state if type(kv[0]) is str) if isinstance(wrapper.state, D) else {}
        info = dtype_info(state.get("dtype"))
        shape = state.get("shape")
        if info is None or not isinstance(shape, tuple) or not all(type(d) is int and d >= 0 for d in shape):
            raise StopParse("a joblib array header cannot be followed (dtype or shape not plain data)")
        hasobject, itemsize = info
        r.joblib_arrays += 1
        if hasobject:  # joblib pickles object arrays with a plain nested pickle
            inner = type(self)(budgets=self.budgets, meter=self.meter, depth=self.depth + 1).run(buf, pos, end)
            r.globals += inner.globals
            r.anomalies += inner.anomalies
            r.nested += inner.nested
            if inner.budget:
                raise inner.budget
            if not inner.complete:
                raise StopParse(f"the object array pickle inside joblib data is broken ({inner.error})")
            return inner.end
        count = 1
        for d in shape:
            count *= d
        if state.get("numpy_array_alignment_bytes") is not None:
            if pos >= end:
                raise StopParse("truncated joblib padding")
            pos += 1 + buf[pos]
        pos += count * itemsize
        if pos > end:
            raise StopParse("joblib array data runs past the end of the file")
        return pos
