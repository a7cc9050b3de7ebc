"""Re-running the assessments a mitigation targets, through the suites of ``assess.suites``.

Evasion for adversarial training, distillation and squeezing; privacy for DP training;
integrity for sanitization. The suites run exactly as ``riskloop assess`` runs them (same
attacks, budgets and statistics), so before / after numbers are comparable with every other
run in the store. Options per suite come from the caller (``--suite-option``), e.g.
``privacy.reference_models=0`` for a quick run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from ..config import Settings
from ..errors import UserError
from ..findings import AssessmentResult
from ..targets.base import Target

log = logging.getLogger(__name__)


@dataclass
class ModelStub:
    """Name, version and reference of a model version a suite is asked about.

    The new version is registered only after its assessments ran (one write transaction),
    so the suites see this stand-in with the version number it is about to get.
    """

    name: str
    version: int
    id: int | None = None
    digest: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


@dataclass
class SuiteCall:
    """One suite invocation: which model and data, and the suite options."""

    settings: Settings
    model: Any
    target: Target
    X: np.ndarray
    y: np.ndarray
    dataset: Any = None
    options: dict[str, Any] = field(default_factory=dict)
    random_state: int = 0
    limit: int | None = None  # the row sample the caller drew (recorded so runs compare)
    progress: Any = None


def standard_eps(target: Target) -> float:
    """The evasion suite's standard budget (where the ARS is read) for this target."""
    from ..assess.evasion.suite import STANDARD

    return float(STANDARD[target.input_spec.kind]["standard_eps"])


def run_suite(suite: str, call: SuiteCall) -> AssessmentResult:
    """Run one registered suite on ``call`` (raises the suite's own errors)."""
    from ..assess.suites import SuiteRequest, get_suite

    runner = get_suite(suite)
    request = SuiteRequest(
        settings=call.settings, model=call.model, dataset=call.dataset, target=call.target,
        X=call.X, y=call.y, options=dict(call.options), random_state=call.random_state,
        progress=call.progress,
    )
    result = runner(request)
    result.params.update({"suite": suite, "model": call.model.ref,
                          "dataset": getattr(call.dataset, "ref", None),
                          "random_state": call.random_state, "rows": len(call.X),
                          "limit": call.limit, "by": "mitigate"})
    return result


def try_suite(suite: str, call: SuiteCall, warnings: list[str]) -> AssessmentResult | None:
    """:func:`run_suite`, but a suite that cannot run here becomes a warning, not a failure."""
    try:
        return run_suite(suite, call)
    except UserError as exc:
        warnings.append(f"{suite} assessment of {call.model.ref} skipped: {exc}")
        log.warning("%s assessment of %s skipped: %s", suite, call.model.ref, exc)
        return None


def split_options(items: list[str] | None) -> dict[str, dict[str, Any]]:
    """``SUITE.KEY=VALUE`` strings to ``{suite: {key: value}}``."""
    from ..errors import InputError

    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        suite, dot, opt = key.partition(".")
        if not eq or not dot or not suite or not opt:
            raise InputError(
                f"bad suite option '{item}': write SUITE.KEY=VALUE, e.g. privacy.reference_models=0"
            )
        opt, value = opt.strip(), value.strip()
        parsed: Any = value
        if opt in LIST_OPTIONS:
            parsed = [v.strip() for v in value.split(",") if v.strip()]
            if opt in NUMBER_LISTS:
                try:
                    parsed = [float(Fraction(v)) for v in parsed]
                except (ValueError, ZeroDivisionError):
                    raise InputError(f"bad suite option '{item}': use numbers such as 0.03 or 8/255") from None
        elif opt == "standard_eps":
            try:
                parsed = float(Fraction(value))
            except (ValueError, ZeroDivisionError):
                raise InputError(f"bad suite option '{item}': use a number such as 8/255") from None
        out.setdefault(suite.strip(), {})[opt] = parsed
    return out


LIST_OPTIONS = ("attacks", "eps")
NUMBER_LISTS = ("eps",)
