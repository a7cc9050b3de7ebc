"""The Markdown report: the same data as the HTML one, as text for reviews and pull requests."""

from __future__ import annotations

from typing import Any


def _cell(value: Any) -> str:
    text = "-" if value is None or value == "" else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return out + [""]


def render_markdown(d: dict[str, Any]) -> str:
    m, g, r = d["model"], d["gate"], d["risk"]
    lines = [
        f"# Risk report: {m['ref']}", "",
        f"- digest `{m['digest']}`; domain {m['domain']}, tier {m['tier']}, stage {m['stage']}",
        f"- generated {d['generated_at']} by riskloop {d['riskloop_version']}",
        f"- policy **{d['policy']['name']}** ({d['policy']['source']}, digest "
        f"`{d['policy']['digest'][:12]}`), overrides: {', '.join(d['policy']['applied_overrides']) or 'none'}",
        "", f"## Gate decision: **{g['decision']}** (exit code {g['exit_code']})", "",
    ]
    lines += table(["rule", "status", "value", "threshold", "evidence", "detail"],
                   [[f"`{x['id']}`", x["status"], x["value"], x["threshold"],
                     f"run #{x['run_id']}" if x["run_id"] else None, x["detail"]] for x in g["rules"]])
    lines += [f"## Risk: {r['score']}/100 ({r['assessed']}/{r['applicable']} threats assessed)", ""]
    lines += table(["threat", "ATLAS", "likelihood", "impact", "level", "basis"],
                   [[t["name"], ", ".join(d["threats"][t["threat_id"]]["atlas"]),
                     t["likelihood"] or "?", t["impact"], t["level"], t["basis"]] for t in r["threats"]])
    if r["gaps"]:
        lines += [f"Gaps (never assessed, counted at likelihood 5): {', '.join(r['gaps'])}", ""]
    if d["residual"]:
        res = d["residual"]
        lines += [f"### Residual risk after {res['method'] or 'mitigation'} (from {res['parent']}): "
                  f"{res['score_before']} → {res['score_after']}", ""]
        lines += table(["threat", "before", "after", "change"],
                       [[x["threat_id"], x["before"], x["after"], x["change"]] for x in res["rows"]])
    ch = d["charts"]
    lines += ["## Measurements", ""]
    if "robustness" in ch:
        rob = ch["robustness"]
        lines += [f"- Robustness (run #{rob['run_id']}): ARS {_cell(rob['ars'])} at eps {_cell(rob['at'])}, "
                  f"clean accuracy {_cell(rob['clean_accuracy'])}; curve: "
                  + ", ".join(f"{p['eps']}→{p['robust_accuracy']}" for p in rob["curve"])
                  + ("; proved robust (lower bound): "
                     + ", ".join(f"{p['eps']}→{p['verified_accuracy']}" for p in rob["curve"]
                                 if p.get("verified_accuracy") is not None)
                     if any(p.get("verified_accuracy") is not None for p in rob["curve"]) else "")]
    if "roc" in ch:
        roc = ch["roc"]
        lines += [f"- Membership inference (run #{roc['run_id']}): AUC {_cell(roc['auc'])}, advantage "
                  f"{_cell(roc['advantage'])}, TPR at 1% FPR {_cell(roc['tpr_at_1pct_fpr'])}"]
    if "fairness" in ch:
        fr = ch["fairness"]
        lines += [f"- Fairness (run #{fr['run_id']}): " + ", ".join(f"{k} {v}" for k, v in fr["gaps"].items())
                  + (f"; worst group {fr['worst_group']}" if fr.get("worst_group") is not None else "")]
    if "extraction" in ch:
        ex = ch["extraction"]
        lines += [f"- Extraction (run #{ex['run_id']}): fidelity {_cell(ex['fidelity'])}; curve: "
                  + ", ".join(f"{p.get('budget')}→{p.get('fidelity')}" for p in ex["curve"])]
    if not ch:
        lines += ["No measurement recorded."]
    sc = d["supply_chain"]
    lines += ["", f"## Supply chain: {sc['verdict'] or 'not scanned'}", ""]
    if sc["findings"]:
        lines += table(["severity", "finding", "detail"], [[f["severity"], f["title"], f["detail"]]
                                                           for f in sc["findings"]])
    lines += ["## Lineage", ""] + _lineage(d["lineage"], 0) + [""]
    c = d["compliance"]
    lines += [f"## Compliance evidence (red-team passed: {c['red_team_passed']}, privacy audit "
              f"passed: {c['privacy_audit_passed']})", ""]
    lines += table(["framework", "item", "status", "evidence"],
                   [[i["framework"], f"{i['id']} {i['title']}", i["status"], i["evidence"]]
                    for i in c["items"]])
    lines += ["## Evidence", ""]
    lines += table(["run", "suite", "finished", "status", "note"],
                   [[f"#{e['run_id']}", e["suite"], e["finished_at"], e["status"], e["note"]]
                    for e in d["evidence"]])
    if d["audit_head"]:
        lines += [f"Audit chain head #{d['audit_head']['seq']} `{d['audit_head']['hash']}`", ""]
    return "\n".join(lines)


def _lineage(node: dict[str, Any], depth: int) -> list[str]:
    pad = "  " * depth
    via = f" via {node['derivation']['method']}" if node.get("derivation", {}).get("method") else ""
    out = [f"{pad}- model {node['model']} `{node['digest'][:12]}`{via}"]
    for ds in node["trained_on"]:
        out += _dataset(ds, depth + 1)
    if node.get("derived_from"):
        out += [f"{pad}  - derived from:"] + _lineage(node["derived_from"], depth + 2)
    return out


def _dataset(node: dict[str, Any], depth: int) -> list[str]:
    pad = "  " * depth
    via = f" via {node['derivation']['method']}" if node.get("derivation", {}).get("method") else ""
    out = [f"{pad}- trained on dataset {node['dataset']} `{node['digest'][:12]}`{via}"]
    if node.get("derived_from"):
        out += _dataset(node["derived_from"], depth + 1)
    return out
