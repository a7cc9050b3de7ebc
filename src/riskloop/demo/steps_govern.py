"""Demo steps of the organisational MANAGE step: a gate decision and an offline HTML report.

Every model version the demo registered is gated under the built-in default policy (the
decision is recorded), and the newest version of the demo model gets a report in
``<workspace>/reports/``. Without the measurements of earlier steps the gate says NO-GO:
missing evidence is never taken as safe.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..govern import approvals, policy
from ..govern.reports import write_report
from ..inventory.assets import list_models
from ..inventory.refs import resolve_model
from ..store.db import transaction

if TYPE_CHECKING:
    from .scenario import DemoContext


def step_govern(ctx: DemoContext) -> Iterator[tuple[str, dict[str, Any]]]:
    from .scenario import MODEL_NAME

    settings = ctx.settings
    pol = policy.load(None, workspace=settings.workspace)
    decisions: dict[str, str] = {}
    with transaction(settings) as s:
        for mv in list_models(s):
            result = approvals.evaluate(s, mv, pol)
            approvals.record(s, actor=settings.actor, mv=mv, policy=pol, result=result)
            decisions[mv.ref] = result.decision
            if mv.name == MODEL_NAME:
                latest = result
    yield "gate", {"policy": pol.name, "models": len(decisions), "decision": latest.decision,
                   "model": latest.model, "risk_score": latest.risk.score,
                   "blocking": ", ".join(latest.failing()) or "-", "decisions": decisions}
    with transaction(settings) as s:
        mv = resolve_model(s, f"{MODEL_NAME}@latest")
        out = settings.workspace / "reports" / f"{mv.name}-v{mv.version}.html"
        rep = write_report(s, actor=settings.actor, mv=mv, policy=pol, out=out, fmt="html")
    ctx.data["report"] = out
    yield "report", {"path": rep["path"], "bytes": rep["bytes"], "sha256": rep["sha256"][:12]}
