"""Machine formats of a gate evaluation for CI systems: JUnit XML and SARIF 2.1.0.

JUnit: one ``testcase`` per rule; ``fail`` and ``missing`` are failures, ``pending`` sign-offs
are errors (they need a person, not a code change), ``skipped`` rules are skipped.
SARIF: one result per rule that is failing, missing, pending or accepted, located at the policy line that set its
threshold, with the model as a logical location; the rule catalogue names the threat.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from .. import __version__
from ..findings import THREATS
from .gates import RULE_THREATS, GateEvaluation

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVEL = {"fail": "error", "missing": "error", "pending": "warning", "accepted": "note"}


def _value(v: Any) -> str:
    return "-" if v is None else str(v)


def to_junit(result: GateEvaluation) -> str:
    failures = sum(1 for r in result.rules if r.status in ("fail", "missing"))
    errors = sum(1 for r in result.rules if r.status == "pending")
    skipped = sum(1 for r in result.rules if r.status == "skipped")
    suites = ET.Element("testsuites", name="riskloop gate")
    suite = ET.SubElement(suites, "testsuite", {
        "name": f"riskloop gate {result.model}", "tests": str(len(result.rules)),
        "failures": str(failures), "errors": str(errors), "skipped": str(skipped)})
    props = ET.SubElement(suite, "properties")
    for name, value in (("decision", result.decision), ("model", result.model),
                        ("digest", result.digest), ("policy", result.policy_name),
                        ("policy_digest", result.policy_digest),
                        ("risk_score", str(result.risk.score))):
        ET.SubElement(props, "property", name=name, value=value)
    for r in result.rules:
        case = ET.SubElement(suite, "testcase", classname=f"riskloop.gate.{result.model}",
                             name=f"{r.id}: {r.title}")
        msg = (f"{r.status}: value {_value(r.value)}, threshold {r.threshold}, "
               f"evidence {'run #' + str(r.run_id) if r.run_id else '-'}; {r.detail}")
        if r.status in ("fail", "missing"):
            ET.SubElement(case, "failure", message=msg, type=r.status).text = msg
        elif r.status == "pending":
            ET.SubElement(case, "error", message=msg, type="needs-approval").text = msg
        elif r.status == "skipped":
            ET.SubElement(case, "skipped", message=msg)
        else:
            ET.SubElement(case, "system-out").text = msg
    ET.indent(suites)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(suites, encoding="unicode") + "\n"


def to_sarif(result: GateEvaluation) -> dict[str, Any]:
    rules_meta = []
    for r in result.rules:
        threat = THREATS.get(RULE_THREATS.get(r.id, ""))
        rules_meta.append({
            "id": r.id, "name": r.title,
            "shortDescription": {"text": f"{r.title} ({r.threshold})"},
            "properties": {"threat": threat.id if threat else None,
                           "atlas": list(threat.atlas) if threat else [],
                           "policy_key": r.policy_key},
        })
    source = result.policy_source
    physical = None if source.startswith("<") else Path(source).as_posix()
    results = []
    for r in result.rules:
        if r.status in ("pass", "approved", "skipped"):
            continue
        loc: dict[str, Any] = {"logicalLocations": [{"name": result.model, "kind": "module",
                                                     "fullyQualifiedName": f"model:{result.model}"}]}
        if physical:
            loc["physicalLocation"] = {"artifactLocation": {"uri": physical},
                                       "region": {"startLine": r.line or 1}}
        results.append({
            "ruleId": r.id, "level": _LEVEL.get(r.status, "warning"),
            "kind": "fail" if r.status in ("fail", "missing", "pending") else "informational",
            "message": {"text": f"{result.model}: {r.title} is {r.status} (value {_value(r.value)}, "
                                f"threshold {r.threshold}); {r.detail}"},
            "locations": [loc],
            "properties": {"status": r.status, "value": r.value, "run_id": r.run_id},
        })
    return {
        "$schema": SARIF_SCHEMA, "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {"name": "riskloop", "version": __version__,
                                "rules": rules_meta}},
            "results": results,
            "properties": {"decision": result.decision, "model": result.model,
                           "digest": result.digest, "policy_digest": result.policy_digest,
                           "risk_score": result.risk.score},
        }],
    }


def to_json(result: GateEvaluation) -> str:
    return json.dumps(result.as_dict(), indent=2, sort_keys=True, default=str) + "\n"
