"""Budgets: how much work one scanned file may cost, so a bomb is reported, not obeyed.

- ``max_opcodes``: pickle opcodes interpreted per pickle stream (the symbolic engine);
- ``max_memory``: extra memory (bytes) one pickle may make the scanner hold;
- ``max_nesting``: archives inside archives, pickles inside pickles, compressed layers;
- ``max_decompressed``: bytes decompressed per scanned file, all members together;
- ``max_members``: entries read from one archive;
- ``max_seconds``: wall-clock time per scanned file.

A budget that runs out stops the part of the scan it guards and becomes a "needs trust"
finding that names the budget; nothing is guessed about the rest.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ...errors import InputError

GiB = 1024**3


@dataclass(frozen=True)
class Budgets:
    max_opcodes: int = 50_000_000
    max_memory: int = 2 * GiB
    max_nesting: int = 8
    max_decompressed: int = 8 * GiB
    max_members: int = 100_000
    max_seconds: float = 600.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, values: dict[str, Any], *, where: str = "budgets") -> Budgets:
        """A copy with ``values`` applied; unknown keys or non-positive values are an error."""
        known = {f.name: f.type for f in fields(self)}
        clean: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                raise InputError(
                    f"{where}: unknown budget '{key}': use one of {', '.join(known)}"
                )
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise InputError(f"{where}: budget '{key}' must be a positive number, got {value!r}")
            clean[key] = float(value) if key == "max_seconds" else int(value)
        return replace(self, **clean)


class BudgetExceeded(Exception):
    """Raised inside the engines when a budget runs out; turned into a finding."""

    def __init__(self, budget: str, detail: str) -> None:
        super().__init__(f"{budget} budget exceeded: {detail}")
        self.budget = budget
        self.detail = detail


def _rss_bytes() -> int:
    """Current resident set size (Linux: /proc; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/statm", "rb") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak * 1024


class Meter:
    """Tracks time and memory for one scanned file against its budgets."""

    def __init__(self, budgets: Budgets) -> None:
        self.budgets = budgets
        self.started = time.monotonic()
        self.deadline = self.started + budgets.max_seconds
        self.decompressed = 0

    def check_time(self) -> None:
        if time.monotonic() > self.deadline:
            raise BudgetExceeded("max_seconds", f"scan took longer than {self.budgets.max_seconds:g} s")

    def rss_baseline(self) -> int:
        return _rss_bytes()

    def check_memory(self, baseline: int) -> None:
        grown = _rss_bytes() - baseline
        if grown > self.budgets.max_memory:
            raise BudgetExceeded(
                "max_memory", f"the pickle made the scanner hold {grown / 2**20:.0f} MiB "
                f"(limit {self.budgets.max_memory / 2**20:.0f} MiB)"
            )

    def add_decompressed(self, n: int) -> None:
        self.decompressed += n
        if self.decompressed > self.budgets.max_decompressed:
            raise BudgetExceeded(
                "max_decompressed", f"more than {self.budgets.max_decompressed} bytes decompressed "
                "(a compression bomb, or raise the budget)"
            )

    def decompress_room(self) -> int:
        return max(0, self.budgets.max_decompressed - self.decompressed)
