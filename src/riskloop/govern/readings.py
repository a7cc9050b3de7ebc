"""Reading the numbers a policy asks about out of stored runs, conservatively.

Robust accuracy never rises with the perturbation budget, and extraction fidelity never falls
with the query budget. So when a policy asks for a point that was not measured exactly, we
read the nearest measured point on the pessimistic side: robust accuracy at the smallest
measured epsilon at or above the one asked for (a lower bound), fidelity at the smallest
measured budget at or above the one asked for (an upper bound). Beyond the measured range the
answer is unknown, never extrapolated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .evidence import RunEvidence, number


@dataclass(frozen=True)
class Reading:
    """A value read from a run (None: not available, with ``note`` saying why)."""

    value: float | None
    note: str = ""
    at: float | None = None  # the epsilon or budget the value was read at


def _points(raw: Any, x: str, y: str) -> list[tuple[float, float]]:
    pts: list[tuple[float, float]] = []
    for item in raw if isinstance(raw, list) else []:
        if isinstance(item, dict):
            a, b = number(item.get(x)), number(item.get(y))
            if a is not None and b is not None:
                pts.append((a, b))
    return sorted(pts)


def ars_at(run: RunEvidence, eps: float | None) -> Reading:
    """Adversarial Robustness Score at ``eps`` (None: the run's standard epsilon)."""
    ars = number(run.metrics.get("ars"))
    run_eps = number(run.metrics.get("eps"))
    if run_eps is None:
        run_eps = number(run.params.get("eps"))
    if eps is None:
        if ars is None:
            return Reading(None, f"run #{run.run_id} has no 'ars' metric")
        return Reading(ars, f"ARS at the standard eps {run_eps:g}" if run_eps is not None
                       else "ARS at the suite's standard eps", run_eps)
    points = _points(run.metrics.get("curve"), "eps", "robust_accuracy")
    if ars is not None and run_eps is not None:
        points.append((run_eps, ars))
    covering = [(e, a) for e, a in points if e >= eps or math.isclose(e, eps, rel_tol=1e-9, abs_tol=1e-12)]
    if not covering:
        top = max((e for e, _ in points), default=None)
        note = (f"run #{run.run_id} measured up to eps {top:g}, the policy asks for eps {eps:g}"
                if top is not None else f"run #{run.run_id} has no robustness curve")
        return Reading(None, note)
    e, a = min(covering, key=lambda p: (p[0], p[1]))
    # Several attacks at the same eps: take the worst case.
    worst = min(acc for x, acc in covering if math.isclose(x, e, rel_tol=1e-9, abs_tol=1e-12))
    return Reading(worst, f"robust accuracy at eps {e:g} (policy eps {eps:g})", e)


def fidelity_at(run: RunEvidence, budget: int | None) -> Reading:
    """Surrogate fidelity at a query budget (None: the largest budget measured)."""
    points = _points(run.metrics.get("fidelity_curve"), "budget", "fidelity")
    at_max = number(run.metrics.get("fidelity_at_max_budget"))
    if budget is None:
        if at_max is not None:
            top = points[-1][0] if points else None
            return Reading(at_max, "fidelity at the largest budget measured", top)
        if points:
            b, f = points[-1]
            return Reading(f, f"fidelity at budget {b:g}", b)
        return Reading(None, f"run #{run.run_id} has no fidelity metric")
    covering = [(b, f) for b, f in points if b >= budget]
    if not covering:
        top = points[-1][0] if points else None
        note = (f"run #{run.run_id} measured up to {top:g} queries, the policy asks for {budget}"
                if top is not None else f"run #{run.run_id} has no fidelity curve")
        return Reading(None, note)
    b = min(x for x, _ in covering)
    f = max(y for x, y in covering if x == b)
    return Reading(f, f"fidelity at budget {b:g} (policy budget {budget})", b)


def metric(run: RunEvidence, key: str) -> Reading:
    value = number(run.metrics.get(key))
    if value is None:
        return Reading(None, f"run #{run.run_id} has no '{key}' metric")
    return Reading(value, f"{key} from run #{run.run_id}")


def fairness_gap(run: RunEvidence) -> Reading:
    """The larger of the demographic-parity and equalized-odds differences."""
    values = [number(run.metrics.get(k)) for k in
              ("demographic_parity_difference", "equalized_odds_difference")]
    known = [v for v in values if v is not None]
    if not known:
        return Reading(None, f"run #{run.run_id} has no fairness gap metric")
    return Reading(max(known), "largest fairness gap")


def worst(
    runs: Sequence[RunEvidence], read: Callable[[RunEvidence], Reading], *, higher_is_worse: bool
) -> tuple[Reading, RunEvidence | None]:
    """The worst reading across usable runs (and its run); notes of all runs when none reads."""
    found = [(read(r), r) for r in runs]
    known = [(rd, r) for rd, r in found if rd.value is not None]
    if not known:
        notes = "; ".join(dict.fromkeys(rd.note for rd, _ in found))
        return Reading(None, notes), None
    pick = max if higher_is_worse else min
    return pick(known, key=lambda p: p[0].value)  # type: ignore[return-value,arg-type]
