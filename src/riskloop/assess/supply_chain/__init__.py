"""Measure: the model-file supply-chain scanner (paper 3.3.1 and Table 2, system layer).

"Loading a malicious .pkl (Pickle) file in Python can execute arbitrary code, allowing an
attacker to take over the server hosting the model." The scanner reads model files as bytes,
decides by allowlist first (:mod:`.allowlist`), and never imports or runs anything a file
names. Formats are detected by content (:mod:`.engine`); pickles are analysed exactly
(:mod:`.pickle_vm`, with a C-speed path in :mod:`.pickle_fast`); containers are read
tolerantly (:mod:`.zipread`, :mod:`.sevenzip`, :mod:`.archives`); tensor-only formats get
header checks (:mod:`.headers`, :mod:`.modelfiles`); budgets bound the work
(:mod:`.budgets`); results render as JSON or SARIF (:mod:`.report`, :mod:`.sarif`).
"""

from __future__ import annotations

from pathlib import Path

from ...findings import AssessmentResult
from .allowlist import Allowlist, Verdict
from .budgets import Budgets
from .engine import scan_bytes, scan_file, scan_paths, sniff
from .policy import ScanPolicy, load_policy, policy_from_dict
from .report import CLEAN, MALICIOUS, NEEDS_TRUST, RULES, FileReport, Issue, ScanReport
from .sarif import to_sarif


class SupplyChainScan:
    """Scan model files for code that runs when they are loaded (paper 3.3.1, Table 2).

    ``SupplyChainScan(policy=...).run(paths)`` returns an :class:`AssessmentResult` of suite
    ``supply-chain``; the full report is in ``report_`` and its verdict in ``verdict_``
    (``clean``, ``needs-trust`` or ``malicious``). Nothing random happens, so there is no
    ``random_state``.
    """

    name = "supply-chain"
    threats = ("supply-chain",)
    access = "artifact"
    requires: tuple[str, ...] = ()

    def __init__(self, *, policy: ScanPolicy | None = None, budgets: Budgets | None = None) -> None:
        self.policy = policy or ScanPolicy()
        self.budgets = budgets
        self.report_: ScanReport | None = None
        self.verdict_: str | None = None

    def _policy(self) -> ScanPolicy:
        if self.budgets is None:
            return self.policy
        return ScanPolicy(name=self.policy.name, allow=self.policy.allow, deny=self.policy.deny,
                          budgets=self.budgets)

    def scan(self, paths: str | Path | list[str | Path]) -> ScanReport:
        items = paths if isinstance(paths, list) else [paths]
        self.report_ = scan_paths(items, self._policy())
        self.verdict_ = self.report_.verdict
        return self.report_

    def run(self, target: str | Path | list[str | Path], X: object = None, y: object = None) -> AssessmentResult:
        """Scan ``target`` (files or folders); ``X`` and ``y`` are not used."""
        return self.scan(target).as_result()


__all__ = [
    "CLEAN",
    "MALICIOUS",
    "NEEDS_TRUST",
    "RULES",
    "Allowlist",
    "Budgets",
    "FileReport",
    "Issue",
    "ScanPolicy",
    "ScanReport",
    "SupplyChainScan",
    "Verdict",
    "load_policy",
    "policy_from_dict",
    "scan_bytes",
    "scan_file",
    "scan_paths",
    "sniff",
    "to_sarif",
]
