"""Demo step of MANAGE (technical): the first loop closes.

The demo's risk appetite asks for robustness at eps 16/255 (about one grey level of the
17-level digits, 1/16 = 0.0625) instead of the suite's standard 8/255, at which the plain CNN
already scores about 0.90. Gated under that policy, ``digits-cnn@1`` fails the ARS rule (its
robust accuracy at 16/255 is read from the stored robustness curve). PGD adversarial training
at that budget produces ``digits-cnn@2``, derived from v1; the evasion suite re-runs on the
same 300 test points, v2 is signed with the demo key and gated under the same policy, and the
step says whether the ARS rule now passes or by how much it still misses. Other rules (for
example the privacy evidence the high-risk tier requires) are reported as they stand.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..govern import approvals, policy
from ..inventory import signing
from ..inventory.refs import resolve_model
from ..mitigate.apply import apply_mitigation
from ..store.db import transaction

if TYPE_CHECKING:
    from .scenario import DemoContext

DEMO_EPS = 16 / 255
DEMO_POINTS = 300  # the sample the evasion step assessed (same seed: the same points)
AT_PARAMS = {"method": "pgd", "eps": DEMO_EPS, "steps": 7, "epochs": 10, "init": "parent"}
ARS_RULE = "evasion.ars"


def demo_policy() -> policy.Policy:
    """The built-in policy with the ARS read at eps 16/255."""
    base = policy.load(None)
    data = copy.deepcopy(base.data)
    data["name"] = "demo-one-grey-level"
    data["rules"]["evasion"]["eps"] = DEMO_EPS
    return policy.Policy(data=data, source="built-in default with rules.evasion.eps = 16/255")


def _ars_rule(result: Any) -> dict[str, Any]:
    rule = next((r for r in result.rules if r.id == ARS_RULE), None)
    if rule is None:
        return {"status": "absent", "value": None}
    return {"status": rule.status, "value": rule.value, "detail": rule.detail}


def step_mitigate(ctx: DemoContext) -> Iterator[tuple[str, dict[str, Any]]]:
    settings = ctx.settings
    pol = demo_policy()
    min_ars = float(pol.resolve(tier="high", domain="finance").get("rules.evasion.min_ars"))
    with transaction(settings) as s:
        parent = resolve_model(s, ctx.refs["model"])
        before = approvals.evaluate(s, parent, pol)
        approvals.record(s, actor=settings.actor, mv=parent, policy=pol, result=before)
    report = apply_mitigation(
        settings, model=ctx.refs["model"], method="adversarial-training",
        data=ctx.refs["train"], test=ctx.refs["test"], params=dict(AT_PARAMS),
        limit=DEMO_POINTS, random_state=ctx.random_state,
    )
    ctx.refs["mitigated"] = report.model
    with transaction(settings) as s:
        child = resolve_model(s, report.model)
        if ctx.data.get("key"):
            signing.sign_model(s, settings, child, key_path=ctx.data["key"])
    with transaction(settings) as s:
        child = resolve_model(s, report.model)
        after = approvals.evaluate(s, child, pol)
        approvals.record(s, actor=settings.actor, mv=child, policy=pol, result=after)
        lineage = {"model": child.ref, "derived_from": child.derived_from.ref if child.derived_from else None,
                   "derivation": child.derivation,
                   "trained_on": [e.dataset.ref for e in child.trained_on]}
    rule_before, rule_after = _ars_rule(before), _ars_rule(after)
    rows = {r.metric: r for r in report.rows}
    ars_after = rule_after["value"]
    if rule_after["status"] == "pass":
        verdict = f"passes: ARS {ars_after:.3f} >= {min_ars:.2f} at eps 16/255"
    elif isinstance(ars_after, int | float):
        verdict = (f"misses by {min_ars - ars_after:.3f}: ARS {ars_after:.3f} < {min_ars:.2f} "
                   "at eps 16/255")
    else:
        verdict = f"no ARS reading: {rule_after.get('detail', '')}"
    clean = rows.get("clean_accuracy")
    yield "mitigate", {
        "policy": pol.name, "parent": report.parent, "model": report.model,
        "method": "PGD adversarial training", "eps": round(DEMO_EPS, 5),
        "ars_rule_before": f"{rule_before['status']} ({_num(rule_before['value'])})",
        "ars_rule_after": verdict,
        "clean_accuracy": f"{_num(clean.before)} -> {_num(clean.after)}" if clean else "-",
        "decision_before": before.decision, "decision_after": after.decision,
        "still_blocking": ", ".join(r for r in after.failing() if r != ARS_RULE) or "-",
        "train_seconds": round(report.train_seconds, 1),
        "table": [{"metric": r.label, "before": r.before, "after": r.after} for r in report.rows],
        "lineage": lineage,
    }


def _num(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, int | float) else str(v)
