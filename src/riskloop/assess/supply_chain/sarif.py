"""SARIF 2.1.0 output for code-scanning dashboards.

One result per issue: level ``error`` for critical (malicious) issues, ``warning`` for those
that need trust. The artifact location is the scanned file; an issue inside an archive member
is reported on the archive, and the message names the member.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ... import __version__
from .report import MALICIOUS, RULES, ScanReport

SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def artifact_uri(path: str) -> str:
    """A relative URI for a path under the current folder, else a file:// URI."""
    p = Path(path)
    try:
        rel = p.resolve().relative_to(Path(os.getcwd()).resolve()) if p.is_absolute() else p
        return quote(rel.as_posix())
    except ValueError:
        return p.resolve().as_uri()


def to_sarif(report: ScanReport) -> dict[str, Any]:
    rule_ids = list(RULES)
    rules = [
        {"id": rid, "name": name, "shortDescription": {"text": name.replace("-", " ")},
         "fullDescription": {"text": text},
         "help": {"text": f"{text} See docs/supply-chain.md."},
         "properties": {"tags": ["security", "supply-chain"]}}
        for rid, (name, text) in RULES.items()
    ]
    artifacts: list[dict[str, Any]] = []
    index: dict[str, int] = {}
    results = []
    for f in report.files:
        uri = artifact_uri(f.path)
        if uri not in index:
            index[uri] = len(artifacts)
            artifacts.append({"location": {"uri": uri}, "length": f.size})
        for issue in f.issues:
            text = issue.title if not issue.detail else f"{issue.title}: {issue.detail}"
            if issue.member:
                text = f"in archive member '{issue.member}': {text}"
            result: dict[str, Any] = {
                "ruleId": issue.rule_id,
                "ruleIndex": rule_ids.index(issue.rule_id),
                "level": "error" if issue.verdict == MALICIOUS else "warning",
                "message": {"text": text},
                "locations": [{"physicalLocation": {"artifactLocation": {
                    "uri": uri, "index": index[uri]}}}],
                "properties": {"verdict": issue.verdict, "member": issue.member,
                               "global": issue.global_name, "asWritten": issue.as_written,
                               "fileVerdict": f.verdict, "format": f.format},
            }
            if issue.offset is not None and not issue.member:
                result["locations"][0]["physicalLocation"]["region"] = {
                    "byteOffset": issue.offset, "byteLength": 1}
            results.append(result)
    return {
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "riskloop", "version": __version__,
                                "semanticVersion": __version__,
                                "rules": rules}},
            "artifacts": artifacts,
            "results": results,
            "invocations": [{"executionSuccessful": True}],
            "properties": {"verdict": report.verdict, "counts": report.counts()},
        }],
    }
