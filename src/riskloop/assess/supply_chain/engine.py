"""Format detection by content and the walk over files, folders and archive members.

Extensions are never trusted: a protocol-0 pickle named ``.bin`` or a ZIP named ``.txt``
is what its bytes say it is. Files are memory-mapped and read, never imported or loaded.
"""

from __future__ import annotations

import logging
import mmap
import os
import time
from pathlib import Path
from typing import Any

from ...errors import MSG_PATH_MISSING, MSG_PATH_UNREADABLE, InputError
from .archives import scan_7z, scan_compressed, scan_tar, scan_zip
from .budgets import BudgetExceeded, Meter
from .context import ScanContext
from .headers import GGUF_MAGIC, check_gguf, check_safetensors, looks_like_safetensors
from .modelfiles import (
    NPY_MAGIC,
    check_keras_config,
    check_npy,
    check_onnx,
    hdf5_keras_configs,
    parse_onnx,
)
from .pickle_vm import PickleVM
from .pickles import scan_stream
from .policy import ScanPolicy
from .report import FileReport, ScanReport
from .sevenzip import MAGIC as SEVENZIP_MAGIC

log = logging.getLogger(__name__)

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
PROBE_OPCODES = 100_000  # how far the symbolic engine reads a file that may be a pickle
INERT_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"%PDF")


def sniff(buf: Any, start: int, end: int) -> str:
    """The format of ``buf[start:end]`` from its first bytes (pickle needs a probe: "maybe")."""
    n = end - start
    if n <= 0:
        return "empty"
    head = bytes(buf[start:start + 16])
    if head[0] == 0x80 and n > 1 and head[1] <= 0x0F:
        return "pickle"
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "zip"
    if head.startswith(SEVENZIP_MAGIC):
        return "7z"
    if head.startswith(NPY_MAGIC):
        return "npy"
    if head.startswith(GGUF_MAGIC):
        return "gguf"
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and n > 10:
        return "bz2"
    if head.startswith((b"\xfd7zXZ\x00", b"]\x00\x00")):
        return "xz"
    if head.startswith(b"\x04\x22\x4d\x18"):
        return "lz4"
    if len(head) > 1 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib"
    if looks_like_safetensors(buf, start, end):
        return "safetensors"
    if n > 262 and bytes(buf[start + 257:start + 262]) == b"ustar":
        return "tar"
    if head.startswith(INERT_MAGIC):
        return "data"
    if head[0] == 0x08:
        return "onnx?"
    if n > 22 and buf.rfind(b"PK\x05\x06", max(start, end - 65557), end) >= 0:
        return "zip"  # an archive behind other data (self-extractor, polyglot)
    return "maybe"


def scan_part(ctx: ScanContext, buf: Any, start: int, end: int, member: str | None, depth: int) -> str:
    """Scan one file or archive member; every surprise becomes an issue, never an exception."""
    fmt = "data"
    try:
        if depth > ctx.budgets.max_nesting:
            raise BudgetExceeded("max_nesting", f"containers nested more than {ctx.budgets.max_nesting} deep")
        ctx.meter.check_time()
        fmt = sniff(buf, start, end)
        if fmt == "maybe":
            probe = PickleVM(budgets=ctx.budgets, meter=ctx.meter, depth=depth).run(
                buf, start, end, max_ops=PROBE_OPCODES)
            if probe.looks_like_pickle or probe.quota_hit:
                fmt = "pickle"
                ctx.part(member, fmt)
                scan_stream(ctx, buf, start, end, member, depth, probe=probe)
                return fmt
            fmt = "data"
        elif fmt == "onnx?":
            model = parse_onnx(bytes(buf[start:end])) if end - start < (2 << 30) else None
            fmt = "onnx" if model is not None else "data"
            if model is not None:
                ctx.part(member, fmt)
                check_onnx(ctx, model, member)
                return fmt
        idx = len(ctx.report.parts)
        ctx.part(member, fmt)
        if fmt == "pickle":
            scan_stream(ctx, buf, start, end, member, depth)
        elif fmt == "zip":
            fmt = scan_zip(ctx, buf, start, end, member, depth)
            if idx < len(ctx.report.parts):
                ctx.report.parts[idx]["format"] = fmt
        elif fmt == "7z":
            scan_7z(ctx, buf, start, end, member, depth)
        elif fmt == "tar":
            scan_tar(ctx, buf, start, end, member, depth)
        elif fmt in ("gzip", "bz2", "xz", "zlib"):
            scan_compressed(ctx, fmt, buf, start, end, member, depth)
        elif fmt == "lz4":
            ctx.issue("unscannable", "needs-trust", "lz4-compressed data",
                      "lz4 frames cannot be decompressed with the standard library", member)
        elif fmt == "npy":
            check_npy(ctx, buf, start, end, member, depth)
        elif fmt == "safetensors":
            check_safetensors(ctx, buf, start, end, member)
        elif fmt == "gguf":
            check_gguf(ctx, buf, start, end, member)
        elif fmt == "hdf5":
            for config in hdf5_keras_configs(buf, start, end):
                check_keras_config(ctx, config, member)
    except BudgetExceeded as exc:
        ctx.issue("budget", "needs-trust", f"{exc.budget} budget exceeded", exc.detail, member)
    except MemoryError:
        ctx.issue("budget", "needs-trust", "out of memory", "the part is too large to scan", member)
    except Exception as exc:  # a parser surprise is a finding, never a crash
        log.debug("scan of %s failed", member, exc_info=True)
        ctx.issue("malformed", "needs-trust", f"{fmt} data could not be parsed",
                  f"{type(exc).__name__}: {exc}", member)
    return fmt


def scan_file(path: Path, policy: ScanPolicy, *, display: str | None = None) -> FileReport:
    """Scan one file on disk."""
    t0 = time.perf_counter()
    report = FileReport(path=display or str(path))
    ctx = ScanContext(report=report, budgets=policy.budgets, meter=Meter(policy.budgets),
                      allowlist=policy.allowlist, base_dir=path.parent, scan_part=scan_part)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            report.size = size
            buf: Any = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    except OSError as exc:
        raise InputError(MSG_PATH_UNREADABLE.format(path=path, reason=exc.strerror or exc)) from None
    report.format = scan_part(ctx, buf, 0, size, None, 0)
    report.engine = dict(ctx.stats)
    report.seconds = time.perf_counter() - t0
    return report


def scan_bytes(data: bytes, policy: ScanPolicy | None = None, *, name: str = "<bytes>") -> FileReport:
    """Scan bytes held in memory (tests, uploads)."""
    policy = policy or ScanPolicy()
    t0 = time.perf_counter()
    report = FileReport(path=name, size=len(data))
    ctx = ScanContext(report=report, budgets=policy.budgets, meter=Meter(policy.budgets),
                      allowlist=policy.allowlist, scan_part=scan_part)
    report.format = scan_part(ctx, data, 0, len(data), None, 0)
    report.engine = dict(ctx.stats)
    report.seconds = time.perf_counter() - t0
    return report


def _walk(root: Path, report: ScanReport, policy: ScanPolicy) -> list[tuple[Path, str]]:
    out: list[tuple[Path, str]] = []
    real_root = root.resolve()
    for folder, dirs, files in os.walk(root, followlinks=False):
        for d in dirs:
            link = Path(folder) / d
            if link.is_symlink() and not link.resolve().is_relative_to(real_root):
                fr = FileReport(path=str(link), format="symlink")
                fr.issues.append(_link_issue(link, link.resolve()))
                report.files.append(fr)
        dirs[:] = sorted(d for d in dirs if d != ".git" and not (Path(folder) / d).is_symlink())
        for name in sorted(files):
            p = Path(folder) / name
            if p.is_symlink():
                target = p.resolve()
                fr = FileReport(path=str(p), format="symlink")
                if not target.is_relative_to(real_root):
                    fr.issues.append(_link_issue(p, target))
                    report.files.append(fr)
                continue
            out.append((p, str(p)))
    return out


def _link_issue(p: Path, target: Path):  # type: ignore[no-untyped-def]
    from .report import Issue

    return Issue(rule="path-escape", verdict="needs-trust", title="symbolic link leaves the folder",
                 detail=f"'{p.name}' points to '{target}': a loader would read that file (not followed)")


def scan_paths(paths: list[str | Path], policy: ScanPolicy | None = None) -> ScanReport:
    """Scan files and folders (recursively); raise InputError for a path that is not there."""
    policy = policy or ScanPolicy()
    t0 = time.perf_counter()
    report = ScanReport(budgets=policy.budgets.as_dict(), policy=policy.name)
    todo: list[tuple[Path, str]] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise InputError(MSG_PATH_MISSING.format(path=p))
        if p.is_dir():
            todo.extend(_walk(p, report, policy))
        elif p.is_file():
            todo.append((p.resolve(), str(raw)))
        else:
            raise InputError(f"'{p}' is not a regular file or folder: scan files or folders")
    for p, display in todo:
        report.files.append(scan_file(p, policy, display=display))
    report.seconds = time.perf_counter() - t0
    return report
