"""The symbolic pickle machine: every global a load would import, resolved exactly, nothing run.

It walks the opcodes the way CPython's unpickler does (stack, marks, memo, protocol 0-5,
frames) but its values are symbols: an imported global is a :class:`G`, the result of a call
is an :class:`Obj`, bytes stay windows into the file. So it resolves ``STACK_GLOBAL`` from
memoized or computed strings, follows ``BUILD`` that overwrites a module's attributes (a
later import then yields the planted value), reads the array bytes joblib writes between
pickle opcodes, and records nested pickles handed to loaders. Anything a scanner could be
fooled by (a computed import name, a non-string operand, a memo slot never written) is
recorded as an anomaly and the walk goes on, so a crafted file cannot hide what follows.

Work and memory are bounded by :class:`~.budgets.Budgets`; containers keep at most
``CAP`` items (the rest is counted, not stored).
"""

from __future__ import annotations

import codecs
import struct
from typing import Any

from .budgets import BudgetExceeded
from .pickle_semantics import Semantics
from .pickle_values import (
    BIG_STR,
    CAP,
    JOBLIB_WRAPPERS,
    BigStr,
    Blob,
    D,
    G,
    Obj,
    PickleResult,
    S,
    StopParse,
    Unk,
    describe,
)

__all__ = ["PickleVM"]

class PickleVM(Semantics):
    """Interpret one pickle stream symbolically; see the module docstring."""

    # -- the machine -------------------------------------------------------------------------
    def run(self, buf: Any, start: int, end: int, *, max_ops: int | None = None) -> PickleResult:
        """Interpret the pickle at ``buf[start:end]``; stops at STOP, an error or a budget."""
        if self.depth > self.budgets.max_nesting:
            raise BudgetExceeded("max_nesting", f"pickles nested more than {self.budgets.max_nesting} deep")
        r = PickleResult(start=start)
        quota = min(max_ops, self.budgets.max_opcodes) if max_ops is not None else self.budgets.max_opcodes
        max_cells = max(1, self.budgets.max_memory // 64)
        stack: list[Any] = []
        metastack: list[list[Any]] = []
        memo: dict[int, Any] = {}
        overlay: dict[str, dict[str, Any]] = {}
        cells = 0
        pos = start
        nops = 0
        next_check = min(quota + 1, 0x10000)
        at = start
        unpack = struct.unpack_from

        def pop_mark() -> list[Any]:
            nonlocal stack
            if not metastack:
                raise StopParse("an opcode needs a MARK that is not there")
            items = stack
            stack = metastack.pop()
            return items

        try:
            while True:
                if pos >= end:
                    raise StopParse("the pickle ends without STOP (truncated)")
                at = pos
                op = buf[pos]
                pos += 1
                nops += 1
                if nops >= next_check:
                    next_check = nops + 0x10000 if nops > quota else min(quota + 1, nops + 0x10000)
                    self.meter.check_time()
                    if cells + len(stack) + len(memo) > max_cells:
                        raise BudgetExceeded("max_memory", f"more than {max_cells} values held by the pickle")
                    if nops > quota:
                        if nops > self.budgets.max_opcodes:
                            raise BudgetExceeded("max_opcodes", f"more than {self.budgets.max_opcodes} opcodes")
                        r.quota_hit = True
                        return r
                # --- literals -------------------------------------------------------------
                if op == 0x8C or op == 0x58 or op == 0x8D:  # SHORT_BINUNICODE, BINUNICODE, BINUNICODE8
                    if op == 0x8C:
                        if pos >= end:
                            raise StopParse("truncated string length")
                        n = buf[pos]
                        pos += 1
                    elif op == 0x58:
                        if pos + 4 > end:
                            raise StopParse("truncated string length")
                        n = unpack("<I", buf, pos)[0]
                        pos += 4
                    else:
                        if pos + 8 > end:
                            raise StopParse("truncated string length")
                        n = unpack("<Q", buf, pos)[0]
                        pos += 8
                    if pos + n > end:
                        raise StopParse(f"a string of {n} bytes runs past the end of the data")
                    if n > BIG_STR:
                        stack.append(BigStr(n))
                    else:
                        try:
                            stack.append(str(buf[pos:pos + n], "utf-8", "surrogatepass"))
                        except UnicodeDecodeError:
                            raise StopParse("a string is not valid UTF-8") from None
                    pos += n
                elif op == 0x94:  # MEMOIZE
                    if not stack:
                        raise StopParse("MEMOIZE on an empty stack")
                    memo[len(memo)] = stack[-1]
                elif op == 0x4B:  # BININT1
                    if pos >= end:
                        raise StopParse("truncated integer")
                    stack.append(buf[pos])
                    pos += 1
                elif op == 0x4D:  # BININT2
                    if pos + 2 > end:
                        raise StopParse("truncated integer")
                    stack.append(unpack("<H", buf, pos)[0])
                    pos += 2
                elif op == 0x4A:  # BININT
                    if pos + 4 > end:
                        raise StopParse("truncated integer")
                    stack.append(unpack("<i", buf, pos)[0])
                    pos += 4
                elif op == 0x47:  # BINFLOAT
                    if pos + 8 > end:
                        raise StopParse("truncated float")
                    stack.append(unpack(">d", buf, pos)[0])
                    pos += 8
                elif op == 0x4E:  # NONE
                    stack.append(None)
                elif op == 0x88 or op == 0x89:  # NEWTRUE / NEWFALSE
                    stack.append(op == 0x88)
                elif op == 0x8A or op == 0x8B:  # LONG1 / LONG4
                    w = 1 if op == 0x8A else 4
                    if pos + w > end:
                        raise StopParse("truncated long")
                    n = buf[pos] if w == 1 else unpack("<i", buf, pos)[0]
                    pos += w
                    if n < 0 or pos + n > end:
                        raise StopParse("a long integer runs past the end of the data")
                    stack.append(int.from_bytes(buf[pos:pos + n], "little", signed=True) if n <= 64 else Unk("huge integer"))
                    pos += n
                elif op in (0x43, 0x42, 0x8E, 0x96, 0x55, 0x54):
                    # SHORT_BINBYTES, BINBYTES, BINBYTES8, BYTEARRAY8, SHORT_BINSTRING, BINSTRING
                    w, fmt = {0x43: (1, "<B"), 0x55: (1, "<B"), 0x42: (4, "<I"), 0x54: (4, "<i"),
                              0x8E: (8, "<Q"), 0x96: (8, "<Q")}[op]
                    if pos + w > end:
                        raise StopParse("truncated length")
                    n = unpack(fmt, buf, pos)[0]
                    pos += w
                    if n < 0 or pos + n > end:
                        raise StopParse(f"a literal of {n} bytes runs past the end of the data")
                    if op in (0x55, 0x54):  # py2 str: decoded (worst case) as text
                        stack.append(str(buf[pos:pos + n], "latin-1") if n <= BIG_STR else BigStr(n))
                    else:
                        stack.append(Blob(buf, pos, pos + n))
                    pos += n
                # --- containers -----------------------------------------------------------
                elif op == 0x28:  # MARK
                    metastack.append(stack)
                    stack = []
                elif op == 0x7D:  # EMPTY_DICT
                    stack.append(D())
                    cells += 1
                elif op == 0x5D:  # EMPTY_LIST
                    stack.append([])
                    cells += 1
                elif op == 0x29:  # EMPTY_TUPLE
                    stack.append(())
                elif op == 0x8F:  # EMPTY_SET
                    stack.append(S())
                    cells += 1
                elif op in (0x85, 0x86, 0x87):  # TUPLE1..3
                    k = op - 0x84
                    if len(stack) < k:
                        raise StopParse("stack underflow")
                    t = tuple(stack[-k:])
                    del stack[-k:]
                    stack.append(t)
                    cells += k
                elif op == 0x74:  # TUPLE
                    items = pop_mark()
                    cells += min(len(items), CAP)
                    stack.append(tuple(items[:CAP]))
                elif op == 0x6C:  # LIST
                    items = pop_mark()
                    cells += min(len(items), CAP)
                    stack.append(items[:CAP])
                elif op == 0x64:  # DICT
                    items = pop_mark()
                    d = D(zip(items[0:2 * CAP:2], items[1:2 * CAP:2], strict=False))
                    cells += len(d)
                    stack.append(d)
                elif op == 0x91:  # FROZENSET
                    items = pop_mark()
                    cells += min(len(items), CAP)
                    stack.append(S(items[:CAP]))
                elif op in (0x61, 0x65, 0x73, 0x75, 0x90):  # APPEND APPENDS SETITEM SETITEMS ADDITEMS
                    if op == 0x61:
                        items = [stack.pop()] if stack else []
                    elif op == 0x73:
                        items = [stack.pop() for _ in range(2)][::-1] if len(stack) >= 2 else []
                    else:
                        items = pop_mark()
                    if not stack or (op in (0x61, 0x73) and not items):
                        raise StopParse("stack underflow")
                    target = stack[-1]
                    if isinstance(target, G):
                        self._mutation(r, target, {0x61: "APPEND", 0x65: "APPENDS", 0x73: "SETITEM",
                                                   0x75: "SETITEMS", 0x90: "ADDITEMS"}[op], at)
                    elif op in (0x73, 0x75):
                        if isinstance(target, D):
                            room = CAP - len(target)
                            if room > 0:
                                pairs = list(zip(items[0::2], items[1::2], strict=False))[:room]
                                target.extend(pairs)
                                cells += len(pairs)
                        elif not isinstance(target, Obj | Unk | list):
                            self._anomaly(r, "malformed", "needs-trust", "item assignment on a value that has no items",
                                          f"SETITEMS on {describe(target)}: a real load stops here", at)
                    elif op == 0x90:
                        if isinstance(target, S):
                            target.extend(items[:max(0, CAP - len(target))])
                        elif not isinstance(target, Obj | Unk):
                            self._anomaly(r, "malformed", "needs-trust", "ADDITEMS on a value that is not a set",
                                          f"ADDITEMS on {describe(target)}: a real load stops here", at)
                    else:
                        if type(target) is list:
                            room = CAP - len(target)
                            if room > 0:
                                target.extend(items[:room])
                                cells += min(room, len(items))
                        elif not isinstance(target, Obj | Unk):
                            self._anomaly(r, "malformed", "needs-trust", "APPEND on a value that is not a list",
                                          f"APPEND on {describe(target)}: a real load stops here", at)
                # --- memo -----------------------------------------------------------------
                elif op in (0x71, 0x72, 0x70):  # BINPUT LONG_BINPUT PUT
                    if op == 0x71:
                        if pos >= end:
                            raise StopParse("truncated memo index")
                        idx = buf[pos]
                        pos += 1
                    elif op == 0x72:
                        if pos + 4 > end:
                            raise StopParse("truncated memo index")
                        idx = unpack("<I", buf, pos)[0]
                        pos += 4
                    else:
                        line, pos = self._line(buf, pos, end)
                        if not line.isdigit():
                            raise StopParse("a PUT index is not a number")
                        idx = int(line)
                    if not stack:
                        raise StopParse("PUT on an empty stack")
                    memo[idx] = stack[-1]
                elif op in (0x68, 0x6A, 0x67):  # BINGET LONG_BINGET GET
                    if op == 0x68:
                        if pos >= end:
                            raise StopParse("truncated memo index")
                        idx = buf[pos]
                        pos += 1
                    elif op == 0x6A:
                        if pos + 4 > end:
                            raise StopParse("truncated memo index")
                        idx = unpack("<I", buf, pos)[0]
                        pos += 4
                    else:
                        line, pos = self._line(buf, pos, end)
                        if not line.isdigit():
                            raise StopParse("a GET index is not a number")
                        idx = int(line)
                    if idx in memo:
                        stack.append(memo[idx])
                    else:
                        self._anomaly(r, "malformed", "needs-trust", f"memo slot {idx} is read but never written",
                                      "a real load stops here; the scan goes on with an unknown value", at)
                        stack.append(Unk(f"memo slot {idx} never written"))
                # --- imports, calls, objects -------------------------------------------------
                elif op == 0x63 or op == 0x69:  # GLOBAL / INST
                    mline, pos = self._line(buf, pos, end)
                    nline, pos = self._line(buf, pos, end)
                    try:
                        module, name = mline.decode("utf-8"), nline.decode("utf-8")
                    except UnicodeDecodeError:
                        raise StopParse("a GLOBAL name is not valid UTF-8") from None
                    value = self._global(r, overlay, module, name, "GLOBAL" if op == 0x63 else "INST", at)
                    if op == 0x69:
                        args = tuple(pop_mark()[:CAP])  # before touching ``stack``: MARK swaps it
                        stack.append(self._call(r, value, args, at))
                    else:
                        stack.append(value)
                elif op == 0x93:  # STACK_GLOBAL
                    if len(stack) < 2:
                        raise StopParse("stack underflow")
                    name_v, module_v = stack.pop(), stack.pop()
                    if type(module_v) is str and type(name_v) is str:
                        stack.append(self._global(r, overlay, module_v, name_v, "STACK_GLOBAL", at))
                    else:
                        self._anomaly(
                            r, "computed-global", "malicious",
                            "an import name is not a plain string written in the file",
                            f"STACK_GLOBAL module is {describe(module_v) if type(module_v) is not str else repr(module_v)}, "
                            f"name is {describe(name_v) if type(name_v) is not str else repr(name_v)}: "
                            "a crafted pickle (computed or non-string import names evade scanners)", at)
                        stack.append(Unk("computed import"))
                elif op == 0x52:  # REDUCE
                    if len(stack) < 2:
                        raise StopParse("stack underflow")
                    args = stack.pop()
                    stack[-1] = self._call(r, stack[-1], args, at)
                elif op == 0x81 or op == 0x92:  # NEWOBJ / NEWOBJ_EX
                    k = 2 if op == 0x81 else 3
                    if len(stack) < k:
                        raise StopParse("stack underflow")
                    vals = stack[-k:]
                    del stack[-k:]
                    stack.append(Obj(vals[0], vals[1], "new"))
                elif op == 0x6F:  # OBJ
                    items = pop_mark()
                    if not items:
                        raise StopParse("OBJ without a class")
                    stack.append(self._call(r, items[0], tuple(items[1:CAP]), at))
                elif op == 0x62:  # BUILD
                    if len(stack) < 2:
                        raise StopParse("stack underflow")
                    state = stack.pop()
                    inst = stack[-1]
                    if isinstance(inst, G):
                        self._mutation(r, inst, "BUILD", at)
                        dicts = state if isinstance(state, tuple) else (state,)
                        for d in dicts:
                            if isinstance(d, D):
                                planted = overlay.setdefault(inst.path, {})
                                for key, value in d:
                                    if type(key) is str:
                                        planted[key] = value
                    elif isinstance(inst, Obj):
                        inst.state = state
                        f = inst.func
                        if isinstance(f, G) and f.path in JOBLIB_WRAPPERS:
                            pos = self._joblib_payload(r, buf, inst, pos, end, at)
                            stack[-1] = Obj(G("numpy", "ndarray"), (), "joblib-array")
                    elif not isinstance(inst, Unk):
                        self._anomaly(r, "malformed", "needs-trust", "BUILD on a plain value",
                                      f"BUILD on {describe(inst)}: a real load stops here", at)
                elif op == 0x50 or op == 0x51:  # PERSID / BINPERSID
                    if op == 0x50:
                        line, pos = self._line(buf, pos, end)
                        pid: Any = line.decode("ascii", "replace")
                    else:
                        if not stack:
                            raise StopParse("stack underflow")
                        pid = stack.pop()
                    if isinstance(pid, tuple) and len(pid) > 2 and pid[0] == "storage" and isinstance(pid[2], str):
                        if len(r.storage_keys) < 1_000_000:
                            r.storage_keys.add(pid[2])
                    stack.append(Unk("persistent id"))
                elif op in (0x82, 0x83, 0x84):  # EXT1 EXT2 EXT4
                    w = {0x82: 1, 0x83: 2, 0x84: 4}[op]
                    if pos + w > end:
                        raise StopParse("truncated extension code")
                    code = int.from_bytes(buf[pos:pos + w], "little")
                    pos += w
                    self._anomaly(r, "unknown-global", "needs-trust", f"extension code {code}",
                                  "EXT opcodes import whatever the loading process registered in "
                                  "copyreg under this code: not decidable from the file", at)
                    stack.append(Unk(f"extension {code}"))
                # --- text (protocol 0) literals ------------------------------------------------
                elif op == 0x49 or op == 0x4C:  # INT / LONG
                    line, pos = self._line(buf, pos, end)
                    if op == 0x49 and line in (b"00", b"01"):
                        stack.append(line == b"01")
                    else:
                        try:
                            stack.append(int(line.rstrip(b"L") if op == 0x4C else line))
                        except ValueError:
                            raise StopParse("an INT argument is not a number") from None
                elif op == 0x46:  # FLOAT
                    line, pos = self._line(buf, pos, end)
                    try:
                        stack.append(float(line))
                    except ValueError:
                        raise StopParse("a FLOAT argument is not a number") from None
                elif op == 0x53:  # STRING
                    line, pos = self._line(buf, pos, end)
                    line = line.rstrip(b"\r")
                    if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
                        raise StopParse("a STRING argument is not quoted")
                    try:
                        raw = codecs.escape_decode(line[1:-1])[0]
                    except ValueError:
                        raise StopParse("a STRING argument has a bad escape") from None
                    stack.append(raw.decode("latin-1"))
                elif op == 0x56:  # UNICODE
                    line, pos = self._line(buf, pos, end)
                    try:
                        stack.append(str(line, "raw-unicode-escape"))
                    except UnicodeDecodeError:
                        raise StopParse("a UNICODE argument has a bad escape") from None
                # --- stack and framing ------------------------------------------------------
                elif op == 0x30:  # POP
                    if stack:
                        stack.pop()
                    else:
                        pop_mark()
                elif op == 0x31:  # POP_MARK
                    pop_mark()
                elif op == 0x32:  # DUP
                    if not stack:
                        raise StopParse("stack underflow")
                    stack.append(stack[-1])
                elif op == 0x95:  # FRAME
                    if pos + 8 > end:
                        raise StopParse("truncated frame length")
                    n = unpack("<Q", buf, pos)[0]
                    pos += 8
                    if pos + n > end:
                        self._anomaly(r, "malformed", "needs-trust", "a frame runs past the end of the data",
                                      f"frame of {n} bytes at offset {at}; scanned what is there", at)
                elif op == 0x80:  # PROTO
                    if pos >= end:
                        raise StopParse("truncated protocol number")
                    r.proto = buf[pos]
                    pos += 1
                    if r.proto > 5:
                        raise StopParse(f"unsupported pickle protocol {r.proto}")
                elif op == 0x97:  # NEXT_BUFFER
                    stack.append(Unk("out-of-band buffer"))
                elif op == 0x98:  # READONLY_BUFFER
                    if not stack:
                        raise StopParse("stack underflow")
                elif op == 0x2E:  # STOP
                    if not stack:
                        raise StopParse("STOP on an empty stack")
                    r.value = stack.pop()
                    r.complete = True
                    r.end = pos
                    return r
                else:
                    raise StopParse(f"invalid opcode 0x{op:02x}")
        except StopParse as exc:
            r.error, r.error_offset = str(exc), at
        except BudgetExceeded as exc:
            r.budget, r.error_offset = exc, at
        except RecursionError:  # pragma: no cover - the machine does not recurse
            r.error, r.error_offset = "nesting too deep", at
        finally:
            r.opcodes = nops
        r.end = pos
        return r
