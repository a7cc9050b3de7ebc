"""Key performance and risk indicators of paper Table 4, computed from the store.

=======================  ===========  ================================================
Indicator                Category     Source
=======================  ===========  ================================================
Adversarial Robustness   Technical    newest usable evasion run per model (ARS)
Drift Magnitude          Technical    Monitor step (PSI over the policy's window)
Mean Time to Restore     Operational  Monitor step (incident timestamps)
Defence FPR              Operational  Monitor step (alerts on legitimate traffic)
Model Compliance Rate    Governance   production models with passing red-team + privacy
=======================  ===========  ================================================

Where nothing was measured the value is ``None`` and shown as "no data", never as 0.
The Monitor step plugs its indicators in with one function each, from a provider module
(see :mod:`riskloop.govern.hooks`)::

    from riskloop.govern.kpi import KpiValue, register_kpi

    def drift_magnitude(session, policy):
        ...
        return KpiValue(key="drift_magnitude", value=psi, ...)

    register_kpi("drift_magnitude", drift_magnitude)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from ..inventory.assets import list_models
from . import evidence, hooks
from .compliance import compliance_rate
from .policy import Policy
from .readings import ars_at, worst


@dataclass(frozen=True)
class KpiValue:
    key: str
    name: str
    category: str
    value: float | None
    unit: str
    threshold: str
    status: str  # ok | breach | no data
    definition: str
    detail: list[dict[str, Any]] = field(default_factory=list)


Provider = Callable[[Session, Policy], KpiValue]
_PROVIDERS: dict[str, Provider] = {}


def register_kpi(key: str, fn: Provider) -> None:
    """Register (or replace) the function computing one indicator."""
    _PROVIDERS[key] = fn


def _no_data(key: str, name: str, category: str, unit: str, limit_key: str, definition: str) -> Provider:
    def provider(session: Session, policy: Policy) -> KpiValue:
        return KpiValue(key, name, category, None, unit,
                        f"<= {policy.data['monitoring'][limit_key]:g}", "no data", definition)
    return provider


def robustness(session: Session, policy: Policy) -> KpiValue:
    """Adversarial Robustness Score per model version; the headline is the lowest one."""
    rows = []
    for mv in list_models(session):
        pol = policy.resolve(tier=mv.tier, domain=mv.domain)
        ev = evidence.collect(session, mv, max_age_days=int(pol.get("evidence.max_age_days")))
        runs = ev.all("evasion")
        eps = pol.get("rules.evasion.eps")
        reading, run = worst(runs, lambda r, eps=eps: ars_at(r, eps), higher_is_worse=False)
        limit = float(pol.get("rules.evasion.min_ars"))
        value = reading.value
        rows.append({"model": mv.ref, "stage": mv.stage, "ars": value, "min_ars": limit,
                     "run_id": run.run_id if run else None,
                     "status": "no data" if value is None else ("ok" if value >= limit else "breach"),
                     "note": reading.note if runs else ev.why_missing("evasion")})
    known = [r for r in rows if r["ars"] is not None]
    lowest = min(known, key=lambda r: r["ars"]) if known else None
    return KpiValue(
        "ars", "Adversarial Robustness Score", "Technical", lowest["ars"] if lowest else None, "fraction",
        "per model: >= its policy min_ars",
        "no data" if not known else ("breach" if any(r["status"] == "breach" for r in known) else "ok"),
        "share of correct predictions under the standard attack ensemble (lowest model shown)", rows)


def model_compliance(session: Session, policy: Policy) -> KpiValue:
    rate = compliance_rate(session, policy)
    value = rate["value"]
    return KpiValue(
        "model_compliance_rate", "Model Compliance Rate", "Governance", value, "fraction", "= 1.0",
        "no data" if value is None else ("ok" if value >= 1.0 else "breach"),
        "share of production models with a passing red-team assessment and privacy audit",
        rate["models"])


def _defaults() -> None:
    register_kpi("ars", robustness)
    register_kpi("drift_magnitude", _no_data(
        "drift_magnitude", "Drift Magnitude", "Technical", "PSI", "drift_block_psi",
        "PSI between training data and live data over the policy's window"))
    register_kpi("mttr", _no_data(
        "mttr", "Mean Time to Restore", "Operational", "hours", "mttr_target_hours",
        "mean time from detecting an incident to restored service"))
    register_kpi("defence_fpr", _no_data(
        "defence_fpr", "False Positive Rate of the defences", "Operational", "fraction",
        "max_defence_fpr", "share of legitimate inputs the defences block"))
    register_kpi("model_compliance_rate", model_compliance)


_defaults()
ORDER = ("ars", "drift_magnitude", "mttr", "defence_fpr", "model_compliance_rate")


def compute(session: Session, policy: Policy) -> list[KpiValue]:
    """Every registered indicator, Table 4 order first."""
    hooks.load_providers()
    keys = [k for k in ORDER if k in _PROVIDERS] + [k for k in _PROVIDERS if k not in ORDER]
    return [_PROVIDERS[k](session, policy) for k in keys]


def as_dicts(values: list[KpiValue]) -> list[dict[str, Any]]:
    return [asdict(v) for v in values]
