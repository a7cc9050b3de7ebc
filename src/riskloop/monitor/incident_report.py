"""Drafting the incident record (Markdown) from what the store knows.

The draft follows the content EU AI Act Art. 73 asks of a serious-incident report and the
paper's playbook (5.2.2). Facts come from the store; what only a person can know (harm to
people, root cause, corrective measures beyond the recorded ones) is marked
``[TO BE COMPLETED]``.
"""

from __future__ import annotations

from typing import Any

TODO = "**[TO BE COMPLETED]**"


def render_markdown(inc: dict[str, Any], *, model: dict[str, Any]) -> str:
    lines = [
        f"# Incident {inc['id']}: {inc['classification'].replace('-', ' ')} on "
        f"`{inc['deployment']}`",
        "",
        "| field | value |",
        "|---|---|",
        f"| state | {inc['state']} |",
        f"| severity | {inc['severity']} |",
        f"| classification | {inc['classification']} — {inc['summary']} |",
        f"| deployment | {inc['deployment']} (mode now: {inc['mode']}, before: {inc['previous_mode']}) |",
        f"| model version | {model['ref']} (digest `{model['digest'][:16]}…`) |",
        f"| domain / EU AI Act tier | {model['domain']} / {model['tier']} |",
        f"| owner | {model.get('owner') or TODO} |",
        f"| detected | {inc['detected_at']} |",
        f"| contained | {inc['contained_at'] or '-'} |",
        f"| restored | {inc['restored_at'] or '-'} |",
        f"| closed | {inc['closed_at'] or '-'} |",
        f"| time to restore | {_duration(inc['time_to_restore_seconds'])} |",
        "",
        "## Regulatory reporting",
        "",
    ]
    if inc["report_deadline"]:
        lines += [
            f"Report to the market surveillance authority by **{inc['report_deadline']}** "
            f"({inc['report_basis']}).",
            "",
            f"- Serious harm to persons, property or fundamental rights: {TODO}",
            f"- Causal link between the AI system and the harm: {TODO}",
        ]
    else:
        lines.append("No Art. 73 deadline applies (not a high-risk system, or not a serious "
                     "incident by severity). Record the reasoning if a reviewer disagrees.")
    lines += ["", "## Signals", "", "| alert | kind | threat | client | severity |",
              "|---|---|---|---|---|"]
    for s in inc["signals"]:
        lines.append(f"| {s.get('alert')} | {s.get('kind')} | {s.get('threat_id') or '-'} | "
                     f"{s.get('client') or '-'} | {s.get('severity')} |")
    lines += ["", "## Timeline (every step is in the audit trail)", "",
              "| time | step | from → to | by | details |", "|---|---|---|---|---|"]
    for t in inc["transitions"]:
        details = ", ".join(f"{k}={v}" for k, v in (t["details"] or {}).items()
                            if not isinstance(v, dict | list))
        lines.append(f"| {t['at']} | {t['action']} | {t['from'] or '-'} → {t['to']} | "
                     f"{t['actor']} | {details} |")
    lines += ["", "## Root cause", "", TODO, "", "## Corrective measures", "",
              "Recorded: " + (", ".join(sorted({t['action'] for t in inc['transitions']}))),
              "", TODO, ""]
    return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    h, rem = divmod(int(seconds), 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m}m {s}s"
