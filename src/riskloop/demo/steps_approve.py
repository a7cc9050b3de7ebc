"""Demo step of MANAGE (human oversight): the risk officer signs the hardened model off.

The demo organisation adopts the policy of the mitigation act as its workspace policy
(``riskloop-policy.yaml``: the ARS read at 16/255) so that every later gate — deployment,
incident recovery, the console — applies the same risk appetite. For the high-risk tier that
policy needs, besides the measured rules, a valid signature, privacy evidence and a named
person's sign-off. The engineer therefore runs the privacy suite on the adversarially trained
``digits-cnn@2`` (the mitigation re-ran only the evasion suite), and a risk officer, a
different person from the one who registered the model (separation of duties), records the
sign-off. Where a privacy rule still misses on the demo's small audit sample, the officer
accepts that residual risk explicitly, with the measured values in the reason: the demo
policy allows risk acceptance (the built-in default does not), and the acceptance is a
separate, audited act that the gate, the report and the console show as such.

:func:`certify` is the same routine for any version (the incident's recovered model goes
through it in the MONITOR act).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..govern import approvals, policy
from ..govern.policy import POLICY_FILE
from ..inventory import signing
from ..inventory.refs import resolve_model
from ..store.db import transaction
from .steps_measure import PRIVACY_OPTIONS, assess_on_one_thread
from .steps_mitigate import demo_policy

if TYPE_CHECKING:
    from .scenario import DemoContext

RISK_OFFICER = "risk-officer@demo"
ACCEPTABLE = ("privacy.",)  # the only rules the demo's officer may accept


def workspace_policy(ctx: DemoContext) -> policy.Policy:
    """Write the demo policy (risk acceptance allowed) as the workspace policy; load it."""
    data = demo_policy().data
    data.setdefault("approval", {})["allow_risk_acceptance"] = True
    path = ctx.settings.workspace / POLICY_FILE
    path.write_text(policy.dump(data), encoding="utf-8")
    return policy.load(None, workspace=ctx.settings.workspace)


def certify(ctx: DemoContext, ref: str, pol: policy.Policy) -> dict[str, Any]:
    """Sign ``ref`` with the demo key, run the privacy suite on it, and record the risk
    officer's sign-off (accepting failed privacy rules explicitly where needed)."""
    settings = ctx.settings
    with transaction(settings) as s:
        mv = resolve_model(s, ref)
        if mv.signature_status != "signed" and ctx.data.get("key"):
            signing.sign_model(s, settings, mv, key_path=ctx.data["key"])
    run = assess_on_one_thread(ctx, ref, "privacy", PRIVACY_OPTIONS)
    m = run["metrics"]
    with transaction(settings) as s:
        mv = resolve_model(s, ref)
        before = approvals.evaluate(s, mv, pol)
        failing = before.failing()
        blocked = [r for r in failing if not r.startswith(ACCEPTABLE) and r != "approval.sign-off"]
        out: dict[str, Any] = {"model": ref, "privacy_run": run["id"],
                               "advantage": round(m["membership_advantage"], 3),
                               "tpr@1%fpr": m["tpr_at_1pct_fpr"], "gate_before": before.decision}
        if blocked:
            out.update({"signed_off": False, "blocking": ", ".join(blocked)})
            return out
        accept = [r for r in failing if r.startswith(ACCEPTABLE)]
        reason = (f"reviewed {ref}: signed, ARS and supply chain pass under '{pol.name}'"
                  + (f"; accepting {', '.join(accept)} (membership advantage "
                     f"{m['membership_advantage']:.3f}, TPR at 1% FPR {m['tpr_at_1pct_fpr']}, "
                     "on a 300 + 300 row audit whose chance level is about 0.11) for the pilot "
                     "deployment, to be re-audited on the full data" if accept else ""))
        appr, after = approvals.approve(s, actor=RISK_OFFICER, mv=mv, policy=pol, reason=reason,
                                        accept_risk=bool(accept))
        out.update({"signed_off": True, "by": RISK_OFFICER, "kind": appr.kind,
                    "accepted": ", ".join(appr.accepted_rules) or "-", "gate_after": after.decision})
    return out


def step_approve(ctx: DemoContext) -> Iterator[tuple[str, dict[str, Any]]]:
    pol = workspace_policy(ctx)
    ctx.data["policy"] = pol
    out = certify(ctx, ctx.refs.get("mitigated") or ctx.refs["model"], pol)
    yield "approve", {"policy": f"{pol.name} ({POLICY_FILE})", **out}
