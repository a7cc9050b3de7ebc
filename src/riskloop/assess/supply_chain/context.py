"""What the format scanners share while one file is scanned."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .allowlist import Allowlist
from .budgets import Budgets, Meter
from .report import FileReport, Issue


@dataclass
class ScanContext:
    """One scanned file: its report, budgets, allowlist and the dispatcher for parts."""

    report: FileReport
    budgets: Budgets
    meter: Meter
    allowlist: Allowlist
    base_dir: Path | None = None
    # scan_part(ctx, buf, start, end, member, depth) -> format name; set by the engine
    scan_part: Callable[..., str] | None = None
    storage_keys: set[str] = field(default_factory=set)
    stats: dict[str, Any] = field(default_factory=lambda: {
        "pickles": 0, "fast": 0, "symbolic": 0, "opcodes": 0})

    def issue(self, rule: str, verdict: str, title: str, detail: str = "",
              member: str | None = None, **extra: Any) -> None:
        self.report.add(Issue(rule=rule, verdict=verdict, title=title, detail=detail,
                              member=member, **extra))

    def part(self, member: str | None, fmt: str) -> None:
        if len(self.report.parts) < 10_000:
            self.report.parts.append({"member": member, "format": fmt})

    def scan(self, buf: Any, start: int, end: int, member: str | None, depth: int) -> str:
        assert self.scan_part is not None
        return self.scan_part(self, buf, start, end, member, depth)


def join_member(parent: str | None, child: str) -> str:
    return f"{parent}!{child}" if parent else child
