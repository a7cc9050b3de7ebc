"""Scanning pickle streams: engine choice, consecutive pickles, legacy PyTorch, verdicts.

Each pickle is first walked by the symbolic engine for up to ``QUOTA`` opcodes: model files
(few opcodes, big literals) finish there without copying their tensors. A longer pickle goes
to the C-unpickler fast path; whatever the fast path cannot vouch for goes back to the
symbolic engine with the full budget. A file may hold several pickles back to back (legacy
``torch.save`` writes five, then raw storages); every one that follows is scanned too.
"""

from __future__ import annotations

from typing import Any

from .allowlist import DANGEROUS, UNKNOWN
from .budgets import BudgetExceeded
from .context import ScanContext, join_member
from .pickle_fast import fast_scan
from .pickle_values import Blob, PickleResult
from .pickle_vm import PickleVM

QUOTA = 100_000
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PICKLES = 5


def scan_one(ctx: ScanContext, buf: Any, start: int, end: int, depth: int,
             *, probe: PickleResult | None = None) -> PickleResult:
    """The analysis of the single pickle that starts at ``start``."""
    r = probe or PickleVM(budgets=ctx.budgets, meter=ctx.meter, depth=depth).run(
        buf, start, end, max_ops=QUOTA)
    if r.quota_hit:
        fast = None
        if end - start <= ctx.budgets.max_memory // 2:
            try:
                fast = fast_scan(buf, start, end, meter=ctx.meter)
            except BudgetExceeded as exc:
                if exc.budget != "max_memory":
                    r.quota_hit, r.budget = False, exc
                    return r
        if fast is not None:
            ctx.stats["fast"] += 1
            r = fast
        else:
            r = PickleVM(budgets=ctx.budgets, meter=ctx.meter, depth=depth).run(buf, start, end)
            ctx.stats["symbolic"] += 1
    else:
        ctx.stats["symbolic"] += 1
    ctx.stats["pickles"] += 1
    ctx.stats["opcodes"] += r.opcodes
    return r


def scan_stream(ctx: ScanContext, buf: Any, start: int, end: int, member: str | None,
                depth: int, *, probe: PickleResult | None = None,
                single: bool = False) -> list[PickleResult]:
    """Scan the pickle at ``start`` and every pickle that follows it; record the verdicts."""
    results: list[PickleResult] = []
    pos = start
    limit = 1 if single else None
    while pos < end:
        r = scan_one(ctx, buf, pos, end, depth, probe=probe if pos == start else None)
        if results and not r.looks_like_pickle:
            ctx.report.notes.append(
                f"{member or 'file'}: {end - pos} bytes of non-pickle data after the last pickle "
                f"(offset {pos}); a pickle loader never reads them")
            break
        results.append(r)
        record(ctx, r, member, depth, buf)
        if not r.complete:
            break
        pos = r.end
        if len(results) == 1 and r.value == LEGACY_MAGIC:
            limit = LEGACY_PICKLES
            ctx.report.notes.append(f"{member or 'file'}: legacy torch.save layout "
                                    "(five pickles, then raw storages)")
        if limit is not None and len(results) >= limit:
            if limit == LEGACY_PICKLES and results[-1].complete and pos < end:
                ctx.report.notes.append(f"{member or 'file'}: {end - pos} bytes of raw tensor "
                                        "storage after the legacy pickles (not code)")
            break
    return results


def _as_written(module: str, name: str) -> str:
    return f"{module}.{name}"


def record(ctx: ScanContext, r: PickleResult, member: str | None, depth: int, buf: Any) -> None:
    """Turn one pickle's analysis into issues and the report's list of globals."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for use in r.globals:
        key = (use.module, use.name)
        if key in seen:
            seen[key]["count"] += 1
            continue
        verdict = ctx.allowlist.classify(use.module, use.name)
        written = _as_written(use.module, use.name)
        entry = {"global": verdict.resolved, "as_written": written, "member": member,
                 "status": verdict.status, "reason": verdict.reason, "count": 1,
                 "offset": use.offset}
        seen[key] = entry
        if len(ctx.report.globals) < 10_000:
            ctx.report.globals.append(entry)
        label = written if written == verdict.resolved else f"{written} ({verdict.resolved})"
        if verdict.status == DANGEROUS:
            ctx.issue("dangerous-global", "malicious", f"dangerous global {label}",
                      verdict.reason, member, global_name=verdict.resolved, as_written=written,
                      offset=use.offset)
        elif verdict.status == UNKNOWN:
            ctx.issue("unknown-global", "needs-trust", f"unknown global {label}",
                      verdict.reason, member, global_name=verdict.resolved, as_written=written,
                      offset=use.offset)
    if len(ctx.storage_keys) < 1_000_000:
        ctx.storage_keys |= r.storage_keys
    for a in r.anomalies:
        ctx.issue(a.rule, a.verdict, a.title, a.detail, member, offset=a.offset)
    if r.budget is not None:
        ctx.issue("budget", "needs-trust", f"{r.budget.budget} budget exceeded in a pickle",
                  f"{r.budget.detail}; the rest of this pickle was not analysed", member,
                  offset=r.error_offset)
    elif r.error is not None:
        ctx.issue("malformed", "needs-trust", "the pickle does not parse to its end",
                  f"{r.error} at offset {r.error_offset}; a loader fails there, the globals "
                  "before it were still checked", member, offset=r.error_offset)
    for i, nested in enumerate(r.nested):
        where = join_member(member, f"<{nested.loader} argument #{i + 1}>")
        data = nested.data
        if isinstance(data, Blob):
            ctx.scan(data.buf, data.start, data.end, where, depth + 1)
        else:
            ctx.scan(data, 0, len(data), where, depth + 1)
