"""What a scan reports: issues per file, a verdict per file and for the whole scan.

Verdicts, from best to worst: ``clean`` (nothing to report), ``needs-trust`` (something could
not be shown safe: an unknown global, a malformed or unscannable part, a budget that ran
out) and ``malicious`` (at least one critical issue: a dangerous global, an import name
computed at load time, a path that escapes the model folder, ...).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ...findings import AssessmentResult, Finding, Severity

CLEAN, NEEDS_TRUST, MALICIOUS = "clean", "needs-trust", "malicious"
_ORDER = {CLEAN: 0, NEEDS_TRUST: 1, MALICIOUS: 2}

# rule id -> (short name, help text) for SARIF and the docs
RULES: dict[str, tuple[str, str]] = {
    "RL-SC001": ("dangerous-global", "The file imports a global that can run code, start "
                 "processes, open connections, touch files or load nested pickles."),
    "RL-SC002": ("unknown-global", "The file imports a global that is not on the allowlist; "
                 "it needs an explicit trust decision before it is loaded."),
    "RL-SC003": ("computed-global", "The name of an imported global is computed while "
                 "loading (memo tricks, overwritten module attributes, non-string operands)."),
    "RL-SC004": ("global-mutation", "The file changes attributes or items of an imported "
                 "module or class while loading."),
    "RL-SC005": ("malformed", "Part of the file does not parse as its format says; what "
                 "follows the error was not analysed."),
    "RL-SC006": ("container-trick", "The archive uses a construct that scanners have been "
                 "bypassed with (flag bits, CRC errors, name mismatches, overlaps)."),
    "RL-SC007": ("unscannable", "Part of the file cannot be inspected (encrypted, unsupported "
                 "compression or coder)."),
    "RL-SC008": ("budget", "A scan budget ran out (opcodes, memory, nesting, decompressed "
                 "size, time): a bomb, or a file larger than the budget allows."),
    "RL-SC009": ("embedded-code", "The model carries code that runs when it is loaded or used "
                 "(Keras Lambda layers, custom objects, TorchScript, chat templates)."),
    "RL-SC010": ("path-escape", "The model refers to files outside its own folder."),
    "RL-SC011": ("custom-operator", "The model needs operators from a custom domain, which "
                 "means loading a native library."),
}
RULE_BY_NAME = {name: rid for rid, (name, _h) in RULES.items()}


@dataclass
class Issue:
    """One finding about one scanned file (``member`` names the part inside an archive)."""

    rule: str  # short rule name, a key of RULE_BY_NAME
    verdict: str  # malicious | needs-trust
    title: str
    detail: str = ""
    member: str | None = None
    global_name: str | None = None  # module.name as resolved
    as_written: str | None = None  # module.name as the file writes it
    offset: int | None = None

    @property
    def rule_id(self) -> str:
        return RULE_BY_NAME[self.rule]

    @property
    def severity(self) -> Severity:
        return Severity.CRITICAL if self.verdict == MALICIOUS else Severity.HIGH

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rule_id"] = self.rule_id
        d["severity"] = str(self.severity)
        return d


@dataclass
class FileReport:
    """The scan of one file on disk."""

    path: str
    size: int = 0
    format: str = "data"
    parts: list[dict[str, Any]] = field(default_factory=list)  # member, format
    issues: list[Issue] = field(default_factory=list)
    globals: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    engine: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        return worst(i.verdict for i in self.issues)

    def add(self, issue: Issue) -> None:
        key = (issue.rule, issue.title, issue.member, issue.global_name)
        for other in self.issues:
            if (other.rule, other.title, other.member, other.global_name) == key:
                return
        self.issues.append(issue)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path, "size": self.size, "format": self.format,
            "verdict": self.verdict, "parts": self.parts,
            "issues": [i.as_dict() for i in self.issues], "globals": self.globals,
            "notes": self.notes, "engine": self.engine, "seconds": round(self.seconds, 4),
        }


def worst(verdicts: Any) -> str:
    out = CLEAN
    for v in verdicts:
        if _ORDER[v] > _ORDER[out]:
            out = v
    return out


@dataclass
class ScanReport:
    """The scan of every file under the given paths."""

    files: list[FileReport] = field(default_factory=list)
    budgets: dict[str, Any] = field(default_factory=dict)
    policy: str = "default"
    seconds: float = 0.0

    @property
    def verdict(self) -> str:
        return worst(f.verdict for f in self.files)

    @property
    def issues(self) -> list[tuple[FileReport, Issue]]:
        return [(f, i) for f in self.files for i in f.issues]

    def counts(self) -> dict[str, Any]:
        issues = [i for f in self.files for i in f.issues]
        return {
            "files": len(self.files),
            "clean": sum(f.verdict == CLEAN for f in self.files),
            "needs_trust_files": sum(f.verdict == NEEDS_TRUST for f in self.files),
            "malicious_files": sum(f.verdict == MALICIOUS for f in self.files),
            "critical": sum(i.verdict == MALICIOUS for i in issues),
            "needs_trust": sum(i.verdict == NEEDS_TRUST for i in issues),
        }

    def as_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "counts": self.counts(), "policy": self.policy,
                "budgets": self.budgets, "seconds": round(self.seconds, 4),
                "files": [f.as_dict() for f in self.files]}

    def as_result(self) -> AssessmentResult:
        """The scan as an assessment run of suite ``supply-chain``, one finding per issue."""
        counts = self.counts()
        findings = [
            Finding(
                threat_id="supply-chain", severity=issue.severity,
                title=issue.title, detail=issue.detail,
                evidence={"file": f.path, "member": issue.member, "rule": issue.rule,
                          "rule_id": issue.rule_id, "global": issue.global_name,
                          "as_written": issue.as_written, "verdict": issue.verdict},
            )
            for f, issue in self.issues
        ]
        return AssessmentResult(
            suite="supply-chain",
            metrics={"files": counts["files"], "critical": counts["critical"],
                     "needs_trust": counts["needs_trust"], "verdict": self.verdict},
            findings=findings,
            artifacts={"files": [{"path": f.path, "format": f.format, "verdict": f.verdict,
                                  "size": f.size} for f in self.files]},
            params={"policy": self.policy, "budgets": self.budgets},
        )
