"""The evasion suite: standard attacks and budgets per data kind, ARS findings, artifacts.

Standard set (why):

- **images in [0, 1]**: L-inf, eps list 1/255, 2/255, 4/255, 8/255, 16/255; the ARS is read at
  **8/255**, the L-inf budget of RobustBench and AutoAttack for natural images (a change
  people do not notice). Attacks: PGD-10 (cheap; removes most points), APGD-CE with 50 steps
  (step-size free, the first AutoAttack attack; 100 there), then Square with 1,000 queries
  (5,000 in AutoAttack) to catch gradient masking.
- **tabular data**: L-inf in standard deviations of each feature, eps list 0.05, 0.1, 0.2,
  0.3; the ARS is read at **0.1 σ**, a change within the measurement noise of most
  real-world features. Same attacks; frozen features never move.
- **black-box targets**: Square only (scores), or HopSkipJump only (labels).

Severity of the finding by ARS (the paper's Table 4 blocks deployment below 85%):
``>= 0.95`` info, ``>= 0.85`` low, ``>= 0.70`` medium, ``>= 0.50`` high, below critical.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import InputError
from ...findings import AssessmentResult, Finding, Severity
from ...targets.base import ACCESS_LABEL, Target, is_white_box
from .apgd import APGD
from .base import EvasionAttack
from .evaluate import Progress, RobustnessEvaluation
from .gradient import FGSM, PGD
from .hsj import HopSkipJump
from .square import SquareAttack

ATTACKS: dict[str, type[EvasionAttack]] = {
    cls.name: cls for cls in (FGSM, PGD, APGD, SquareAttack, HopSkipJump)
}
DEFAULTS: dict[str, dict[str, Any]] = {
    "pgd": {"steps": 10, "random_start": True},
    "apgd-ce": {"steps": 50},
    "square": {"queries": 1000},
    "hopskipjump": {"queries": 2000, "max_iter": 30},
}
STANDARD: dict[str, dict[str, Any]] = {
    "image": {"eps": [1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255], "standard_eps": 8 / 255},
    "tabular": {"eps": [0.05, 0.1, 0.2, 0.3], "standard_eps": 0.1},
}
ARS_GATE = 0.85
_BANDS = ((0.95, Severity.INFO), (0.85, Severity.LOW), (0.70, Severity.MEDIUM), (0.50, Severity.HIGH))


def severity_for_ars(ars: float) -> Severity:
    for floor, sev in _BANDS:
        if ars >= floor:
            return sev
    return Severity.CRITICAL


def standard_attacks(target: Target) -> list[str]:
    if is_white_box(target):
        return ["pgd", "apgd-ce", "square"]
    if target.access == ACCESS_LABEL:
        return ["hopskipjump"]
    return ["square"]


def build_attacks(names: list[str], *, norm: str, random_state: int,
                  overrides: dict[str, dict[str, Any]] | None = None) -> list[EvasionAttack]:
    out = []
    for name in names:
        cls = ATTACKS.get(name)
        if cls is None:
            raise InputError(f"unknown attack '{name}': choose from {', '.join(ATTACKS)}")
        params = {**DEFAULTS.get(name, {}), **(overrides or {}).get(name, {})}
        try:
            out.append(cls(**{"norm": norm, "random_state": random_state, **params}))
        except TypeError as exc:
            raise InputError(f"attack '{name}': {exc}") from None
    return out


def evaluate_evasion(
    target: Target,
    X: np.ndarray,
    y: np.ndarray,
    *,
    eps: list[float] | None = None,
    standard_eps: float | None = None,
    attacks: list[str] | None = None,
    norm: str = "linf",
    overrides: dict[str, dict[str, Any]] | None = None,
    targeted: bool = False,
    early_exit: bool = True,
    full_ensemble: str = "standard",
    verify: bool = True,
    progress: Progress | None = None,
    random_state: int = 0,
) -> AssessmentResult:
    """Run the (standard or given) ensemble and add ARS findings to the result."""
    kind = target.input_spec.kind
    std = STANDARD[kind]
    if standard_eps is None:
        standard_eps = (max(eps) if eps and std["standard_eps"] not in eps else std["standard_eps"])
    eps_list = list(eps) if eps else list(std["eps"])
    names = attacks or standard_attacks(target)
    ev = RobustnessEvaluation(
        attacks=build_attacks(names, norm=norm, random_state=random_state, overrides=overrides),
        eps=eps_list, standard_eps=standard_eps, early_exit=early_exit,
        full_ensemble=full_ensemble, targeted=targeted, verify=verify, progress=progress,
        random_state=random_state,
    )
    result = ev.run(target, X, y)
    result.findings = findings_for(result)
    result.params["kind"] = kind
    result.params["standard_set"] = attacks is None and eps is None
    result.artifacts["_x_adv"] = ev.x_adv_
    result.artifacts["_robust"] = ev.robust_
    return result


def findings_for(result: AssessmentResult) -> list[Finding]:
    m = result.metrics
    ars, eps = float(m["ars"]), float(m["eps"])
    std_rows = [r for r in m["per_attack"] if r["eps"] == eps]
    strongest = max(std_rows, key=lambda r: r["fooled"], default=None)
    sev = severity_for_ars(ars)
    proved = next((p.get("verified_accuracy") for p in m["curve"] if p["eps"] == eps), None)
    verdict = "meets" if ars >= ARS_GATE else "is below"
    out = [Finding(
        threat_id="evasion", severity=sev,
        title=f"Adversarial Robustness Score {ars:.1%} at {m['norm']} eps {eps:.4g}",
        detail=(f"{ars:.1%} of {m['points']} points stay correct under every attack "
                f"({', '.join(dict.fromkeys(r['attack'] for r in std_rows))}); clean accuracy "
                f"{m['clean_accuracy']:.1%}. This {verdict} the paper's 85% deployment threshold."
                + (f" {proved:.1%} are proved robust by linear bounds (a lower bound on the ARS)."
                   if proved is not None else "")),
        metric="ars", value=ars,
        evidence={
            "ars": ars, "eps": eps, "norm": m["norm"], "clean_accuracy": m["clean_accuracy"],
            "verified_accuracy": proved,
            "points": m["points"], "curve": m["curve"], "per_attack": std_rows,
            "strongest_attack": strongest["attack"] if strongest else None,
            "trustworthy": result.trustworthy,
        },
    )]
    if not result.trustworthy:
        out.append(Finding(
            threat_id="evasion", severity=Severity.MEDIUM,
            title="Robustness evaluation is not trustworthy",
            detail="; ".join(result.warnings),
            metric="ars", value=ars, evidence={"warnings": list(result.warnings)},
        ))
    return out


def save_adversarial_examples(result: AssessmentResult, folder: Path, stem: str) -> Path | None:
    """Write the adversarial examples found at the standard eps as NPZ (no pickle)."""
    x_adv = result.artifacts.pop("_x_adv", None)
    robust = result.artifacts.pop("_robust", None)
    if x_adv is None or robust is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{stem}-{time.strftime('%Y%m%dT%H%M%S')}-{np.random.default_rng().integers(1 << 30):08x}.npz"
    with open(path, "wb") as fh:
        np.savez(fh, x_adv=x_adv, robust=robust)
    result.artifacts["adversarial_examples"] = str(path)
    return path


def run_suite(request: Any) -> AssessmentResult:
    """Suite runner for :mod:`riskloop.assess.suites` (options from the CLI)."""
    opts = dict(request.options)
    eps = opts.pop("eps", None)
    result = evaluate_evasion(
        request.target, request.X, request.y,
        eps=[float(e) for e in eps] if eps else None,
        standard_eps=float(opts.pop("standard_eps")) if opts.get("standard_eps") else None,
        attacks=opts.pop("attacks", None) or None,
        norm=str(opts.pop("norm", "linf")),
        targeted=_flag(opts.pop("targeted", False)),
        early_exit=_flag(opts.pop("early_exit", True)),
        full_ensemble=str(opts.pop("full_ensemble", "standard")),
        verify=_flag(opts.pop("verify", True)),
        overrides=_overrides(opts),
        progress=request.progress, random_state=request.random_state,
    )
    model = request.model
    save_adversarial_examples(result, request.settings.artifacts_dir / "evasion",
                              f"{model.name}-v{model.version}")
    return result


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    return str(value).lower() in ("1", "true", "yes", "on")


def _overrides(opts: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``attack.param=value`` options, e.g. ``pgd.steps=50`` or ``square.queries=5000``."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in opts.items():
        attack, dot, param = key.partition(".")
        if not dot or attack not in ATTACKS:
            raise InputError(
                f"unknown evasion option '{key}': use eps, standard_eps, attacks, norm, targeted, "
                "early_exit, full_ensemble, verify or ATTACK.PARAM (e.g. pgd.steps=50)"
            )
        out.setdefault(attack, {})[param] = _number(value)
    return out


def _number(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            continue
    return value

