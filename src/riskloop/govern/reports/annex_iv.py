"""A draft of the EU AI Act technical documentation (Art. 11, Annex IV) from stored evidence.

Each of the nine Annex IV points gets what the store can say (inventory record, lineage and
data digests, test results and their dates, the risk register, the change log, the monitoring
thresholds). What only the provider can write is marked with :data:`TODO`, so a reviewer can
search for it. The draft is a starting point for the provider's documentation, not a
conformity assessment.
"""

from __future__ import annotations

from typing import Any

from .markdown import table

TODO = "**[TO BE WRITTEN BY THE PROVIDER]**"


def _todo(text: str) -> str:
    return f"> {TODO} {text}"


def render_annex_iv(d: dict[str, Any]) -> str:
    m, g, r = d["model"], d["gate"], d["risk"]
    items = {(i["framework"], i["id"]): i for i in d["compliance"]["items"]}

    def status(item: str) -> str:
        i = items.get(("EU AI Act Annex IV", item))
        return f"*Evidence status: {i['status']}* ({i['evidence']})" if i else ""

    out = [
        f"# Technical documentation (EU AI Act Annex IV): {m['ref']}", "",
        f"Draft generated {d['generated_at']} by riskloop {d['riskloop_version']} from the "
        f"evidence store (audit chain head "
        f"{'#' + str(d['audit_head']['seq']) + ' `' + d['audit_head']['hash'] + '`' if d['audit_head'] else 'none'}). "
        "Every passage marked TO BE WRITTEN BY THE PROVIDER must be completed by a person "
        "before use.", "",
        "## 1. General description of the AI system", "", status("1"), "",
        f"- Name and version: **{m['ref']}**, content digest `{m['digest']}`",
        f"- Intended purpose: {m['intended_use'] or TODO}",
        f"- Accountable owner: {m['owner'] or TODO}",
        f"- Framework and format: {m['framework']}, {m['format']}; {m['files']} file(s)",
        f"- Application domain: {m['domain']}; EU AI Act tier: **{m['tier']}** ({m['tier_reason']})",
        f"- Registered {m['created_at']} by {m['created_by']}; lifecycle stage: {m['stage']}", "",
        _todo("Provider name, interaction with other hardware or software, versions of relevant "
              "software, the forms in which the system is placed on the market, the hardware it "
              "runs on, the user interface and the instructions for use (Annex IV 1(a)-(h))."), "",
        "## 2. Elements of the AI system and its development process", "",
        "### (a) Methods, pre-trained systems and third-party tools", "", status("2(a)"), "",
        *_lineage_lines(d["lineage"]), "",
        f"Supply-chain scan verdict: **{d['supply_chain']['verdict'] or 'not scanned'}**; "
        f"signature: {m['signature_status']}.", "",
        "### (b) Design specifications", "",
        _todo("General logic, key design choices and their rationale, assumptions about the "
              "people or groups the system is meant for, main classification choices, what the "
              "system optimises for, and the trade-offs made to meet Chapter III, Section 2."), "",
        "### (c) System architecture and computational resources", "",
        _todo("How the software components build on or feed into each other; the compute used "
              "to develop, train, test and validate the system."), "",
        "### (d) Data requirements", "", status("2(d)"), "",
        *(f"- Training data: {t['dataset']} `{t['digest'][:16]}`" for t in d["lineage"]["trained_on"]),
        "", _todo("Datasheets: provenance, scope and main characteristics of each dataset, how it "
                  "was obtained and selected, labelling and cleaning methods."), "",
        "### (e) Human oversight", "", status("2(e)"), "",
        f"Policy sign-off requirement: the gate's approval rule "
        f"({'required' if any(x['id'] == 'approval.sign-off' and x['required'] for x in g['rules']) else 'not required'} "
        "for this model under the current policy).", "",
        _todo("The human-oversight measures (Art. 14) and the technical measures that help "
              "deployers interpret the system's outputs."), "",
        "### (f) Pre-determined changes", "",
        _todo("Changes to the system and its performance that were planned in advance, and the "
              "technical solutions that keep it compliant through them."), "",
        "### (g) Validation and testing", "", status("2(g)"), "",
        *table(["run", "suite", "finished", "status", "note"],
               [[f"#{e['run_id']}", e["suite"], e["finished_at"], e["status"], e["note"]]
                for e in d["evidence"]]),
        f"Gate decision under policy '{d['policy']['name']}' (digest `{d['policy']['digest'][:12]}`): "
        f"**{g['decision']}**.", "",
        *table(["rule", "status", "value", "threshold", "evidence"],
               [[x["id"], x["status"], x["value"], x["threshold"],
                 f"run #{x['run_id']}" if x["run_id"] else None] for x in g["rules"]]),
        _todo("Sign and date the test reports (Annex IV 2(g) asks for test logs and reports "
              "\"dated and signed by the responsible persons\")."), "",
        "### (h) Cybersecurity measures", "", status("2(h)"), "",
        "Art. 15(5) attack classes and the evidence for each:", "",
        *table(["attack class", "status", "evidence"],
               [[i["id"], i["status"], i["evidence"]] for i in d["compliance"]["items"]
                if i["framework"] == "EU AI Act Art. 15(5)"]),
        "## 3. Monitoring, functioning and control", "", status("3"), "",
        *_measurements(d), "",
        _todo("Capabilities and limitations in performance, including accuracy for the specific "
              "persons or groups the system is meant for; foreseeable unintended outcomes and "
              "sources of risk; input-data specifications."), "",
        "## 4. Appropriateness of the performance metrics", "", status("4"), "",
        "The risk-appetite policy documents each threshold and its reason (see "
        "`riskloop policy show`).", "",
        _todo("Why these metrics and thresholds fit this specific system."), "",
        "## 5. Risk management system (Art. 9)", "", status("5"), "",
        f"Risk score **{r['score']}/100**; {r['assessed']} of {r['applicable']} applicable threats "
        "assessed. Likelihood from evidence, impact from the risk profile, 5×5 matrix.", "",
        *table(["threat", "ATLAS", "L", "I", "level", "basis"],
               [[t["name"], ", ".join(d["threats"][t["threat_id"]]["atlas"]), t["likelihood"] or "?",
                 t["impact"], t["level"], t["basis"]] for t in r["threats"]]),
        *([f"Gaps (never assessed): {', '.join(r['gaps'])}.", ""] if r["gaps"] else []),
        "## 6. Changes through the lifecycle", "", status("6"), "",
        *table(["kind", "id", "what", "by", "at"],
               [["gate", x["id"], f"{x['decision']} ({x['purpose']})", x["by"], x["at"]]
                for x in d["history"]["decisions"]]
               + [["approval", x["id"], f"{x['kind']}: {x['reason']}", x["by"], x["at"]]
                  for x in d["history"]["approvals"]]
               + [["stage", x["id"], f"{x['from']} → {x['to']}", x["by"], x["at"]]
                  for x in d["history"]["stages"]]),
        "The full hash-chained trail: `riskloop audit` and `riskloop audit verify`.", "",
        "## 7. Harmonised standards and other specifications", "", status("7"), "",
        _todo("The harmonised standards applied (with references), or the other solutions "
              "used to meet Chapter III, Section 2. Frameworks this evidence maps to: NIST AI "
              "RMF 1.0, ISO/IEC 42001 Annex A (check the numbering against the standard)."), "",
        "## 8. EU declaration of conformity", "", status("8"), "",
        _todo("A copy of the declaration referred to in Art. 47."), "",
        "## 9. Post-market monitoring (Art. 72)", "", status("9"), "",
        "Monitoring thresholds in the policy: drift, defence false-positive rate and mean time "
        "to restore (see `riskloop policy show`); indicators: `riskloop kpi`.", "",
        _todo("The post-market monitoring plan (Art. 72(3))."), "",
    ]
    return "\n".join(out)


def _lineage_lines(node: dict[str, Any], depth: int = 0) -> list[str]:
    pad = "  " * depth
    method = (node.get("derivation") or {}).get("method")
    lines = [f"{pad}- model {node['model']} `{node['digest'][:16]}`" + (f" (via {method})" if method else "")]
    for t in node["trained_on"]:
        lines.append(f"{pad}  - trained on {t['dataset']} `{t['digest'][:16]}`")
    if node.get("derived_from"):
        lines += _lineage_lines(node["derived_from"], depth + 1)
    return lines


def _measurements(d: dict[str, Any]) -> list[str]:
    ch = d["charts"]
    lines = []
    if "robustness" in ch:
        lines.append(f"- Robust accuracy (ARS) {ch['robustness']['ars']} at eps {ch['robustness']['at']}; "
                     f"clean accuracy {ch['robustness']['clean_accuracy']}")
    if "fairness" in ch:
        lines.append("- Between-group gaps: " + ", ".join(f"{k} {v}" for k, v in ch["fairness"]["gaps"].items()))
        for grp in ch["fairness"]["groups"]:
            lines.append(f"  - {grp['group']}: " + ", ".join(f"{k} {v}" for k, v in grp.items() if k != "group"))
    if "roc" in ch:
        lines.append(f"- Membership inference AUC {ch['roc']['auc']}, advantage {ch['roc']['advantage']}")
    return lines or ["No measurement recorded."]


def todo_count(text: str) -> int:
    return text.count(TODO)
