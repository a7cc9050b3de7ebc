"""Robustness evaluation: an attack ensemble over an eps list, worst case per sample.

A point counts as robust at an eps only if it is classified correctly and *every* attack
fails on it. Attacks run in order and each one only on the points still robust (early exit);
eps values run in ascending order and a point fooled at a smaller eps is not attacked again
at a larger one (the same adversarial example lies inside the larger ball). So an ensemble
costs little more than its first attack, and the robustness curve can only go down.

On a supported white-box network, the points that survive the first attack at an eps are then
handed to :class:`~.verify.LinearBoundVerifier`, which proves some of them robust to *every*
perturbation in the ball; the later attacks skip those (no attack could fool them, so the
robust accuracy is the same), and the share proved is reported as the verified accuracy, a
lower bound to go with the attacks' upper bound.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ...errors import InputError
from ...findings import AssessmentResult
from ...targets.base import QueryBudgetExceeded, Target, check_data, is_white_box, predict
from . import checks
from .base import EvasionAttack, choose_targets, perturbation_norm
from .verify import LinearBoundVerifier, verify_with_probe

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]


def feature_scale(target: Target, X: np.ndarray) -> np.ndarray | None:
    """Per-feature scale of the budget: 1 for images, the standard deviation for tabular data
    (features that never vary get their valid range's width, or 1)."""
    spec = target.input_spec
    if spec.kind == "image":
        return None
    std = X.reshape(len(X), -1).astype(np.float64).std(axis=0).reshape(spec._shape())
    width = spec.upper_array() - spec.lower_array()
    fallback = np.where(np.isfinite(width) & (width > 0), width, 1.0)
    return np.where(std > 0, std, fallback)


def max_eps(target: Target, norm: str, scale: np.ndarray | None) -> float:
    spec = target.input_spec
    width = spec.upper_array() - spec.lower_array()
    s = np.ones_like(width) if scale is None else np.broadcast_to(scale, width.shape)
    w = (width / s)[spec.mutable_mask()]
    if w.size == 0:
        raise InputError("every input feature is frozen: there is nothing an attacker may change")
    return float(np.max(w)) if norm == "linf" else float(np.sqrt(np.sum(np.square(w))))


def forward_cost(attack: EvasionAttack) -> float:
    """An attack's work per point in forward passes (a backward pass counts as one): queries
    for the black-box attacks, two per step and restart for the gradient attacks."""
    queries = getattr(attack, "queries", None)
    if queries:
        return float(queries)
    return 2.0 * getattr(attack, "steps", 1) * getattr(attack, "restarts", 1)


class RobustnessEvaluation:
    """Robust accuracy per attack and eps, worst case over an ensemble, with self-checks.

    Measures the paper's Adversarial Robustness Score (Table 4: correct predictions under a
    standard set of attacks; deployment blocked below 85%) and the robustness curve. With
    ``full_ensemble="standard"`` the black-box attacks of a white-box ensemble run only at
    the standard eps (the curve's other points use the white-box attacks), which keeps a
    five-point curve affordable; ``"all"`` runs every attack at every eps.
    """

    name = "robustness-evaluation"
    threats = ("evasion",)

    def __init__(
        self,
        *,
        attacks: Sequence[EvasionAttack],
        eps: Sequence[float],
        standard_eps: float | None = None,
        early_exit: bool = True,
        full_ensemble: str = "standard",
        targeted: bool = False,
        self_checks: bool = True,
        verify: bool = True,
        progress: Progress | None = None,
        random_state: int | None = 0,
    ) -> None:
        if not attacks:
            raise InputError("the evaluation needs at least one attack")
        norms = {a.norm for a in attacks}
        if len(norms) != 1:
            raise InputError(f"all attacks of one evaluation must use the same norm, got {sorted(norms)}")
        if full_ensemble not in ("standard", "all"):
            raise InputError("full_ensemble must be 'standard' or 'all'")
        self.attacks = list(attacks)
        self.norm = norms.pop()
        self.eps = sorted({float(e) for e in eps} | ({float(standard_eps)} if standard_eps else set()))
        self.standard_eps = float(standard_eps) if standard_eps else max(self.eps)
        self.early_exit = early_exit
        self.full_ensemble = full_ensemble
        self.targeted = targeted
        self.self_checks = self_checks
        self.verify = verify
        self.progress = progress
        self.random_state = random_state

    def _check_eps(self, target: Target, scale: np.ndarray | None) -> None:
        top = max_eps(target, self.norm, scale)
        unit = "standard deviations" if scale is not None else "input units"
        for e in self.eps:
            if not (np.isfinite(e) and 0 < e <= top * (1 + 1e-9)):
                raise InputError(
                    f"eps {e:g} is out of range: {self.norm} budgets for this model lie in "
                    f"(0, {top:g}] ({unit}; the width of its valid input range)"
                )

    def _plan(self, target: Target) -> list[tuple[float, EvasionAttack]]:
        plan = []
        white = is_white_box(target)
        for e in self.eps:
            for a in self.attacks:
                if (white and self.full_ensemble == "standard" and a.access != "white-box"
                        and e != self.standard_eps):
                    continue
                plan.append((e, a.clone(eps=e, targeted=self.targeted)))
        return plan

    def run(self, target: Target, X: Any, y: Any) -> AssessmentResult:
        Xc, yc = check_data(target, X, y)
        scale = feature_scale(target, Xc)
        self._check_eps(target, scale)
        for a in self.attacks:
            if a.access == "white-box" and not is_white_box(target):
                raise InputError(
                    f"attack '{a.name}' needs gradients, but the model is {target.access}: "
                    "use square (scores) or hopskipjump (labels)"
                )
            if a.access == "black-box" and target.access == "label-only":
                raise InputError(f"attack '{a.name}' needs scores, but the model answers labels only: use hopskipjump")
        n = len(Xc)
        tlabels = choose_targets(yc, len(target.classes), self.random_state) if self.targeted else None
        q0 = target.queries
        warnings: list[str] = []
        clean = predict(target, Xc) == yc
        robust = clean.copy()
        plan = self._plan(target)
        per_attack: list[dict[str, Any]] = []
        curve: list[dict[str, Any]] = []
        x_std = Xc.copy()
        robust_std = clean.copy()
        exhausted = False
        verifier, not_verified = (LinearBoundVerifier.for_target(target) if self.verify
                                  else (None, "turned off (verify=false)"))
        proved = np.zeros(n, dtype=bool)  # proved robust at the current eps
        verification: list[dict[str, Any]] = []
        for step, (eps, attack) in enumerate(plan):
            if step == 0 or plan[step - 1][0] != eps:
                proved[:] = False
            elif verifier is not None and not (verification and verification[-1]["eps"] == eps):
                if self.progress:
                    self.progress(f"verify eps={eps:g}", step, len(plan))
                budget = sum(forward_cost(a) for e, a in plan[step:] if e == eps)
                verification.append(self._prove(verifier, Xc, yc, tlabels, robust, proved, eps, scale, budget))
            if self.progress:
                self.progress(f"{attack.name} eps={eps:g}", step, len(plan))
            base = (robust if self.early_exit else clean) & ~proved
            idx = np.flatnonzero(base)
            t0 = time.perf_counter()
            out = attack.attack(target, Xc[idx], yc[idx],
                                target_labels=None if tlabels is None else tlabels[idx], scale=scale)
            seconds = time.perf_counter() - t0
            try:
                ok = checks.verify(target, Xc[idx], yc[idx], out.x_adv, out.success,
                                   None if tlabels is None else tlabels[idx], eps, attack.norm, scale)
            except QueryBudgetExceeded:  # the attack's own answers are all there is
                ok = out.success
                exhausted = True
            if (out.success & ~ok).any():
                warnings.append(f"{attack.name} at eps {eps:g}: {int((out.success & ~ok).sum())} "
                                "claimed adversarial examples did not verify")
            exhausted |= out.exhausted
            warnings += out.notes
            fooled = idx[ok]
            robust[fooled] = False
            if eps <= self.standard_eps:  # also inside the standard ball
                x_std[fooled] = out.x_adv[ok]
            norms = perturbation_norm(out.x_adv[ok] - Xc[fooled], attack.norm, scale)
            per_attack.append({
                "attack": attack.name, "eps": eps, "attacked": len(idx), "fooled": int(ok.sum()),
                "robust_accuracy": float(robust.mean()),
                "success_rate": float(ok.mean()) if len(idx) else 0.0,
                "median_perturbation": float(np.median(norms)) if len(norms) else None,
                "queries": int(out.queries.sum()), "seconds": round(seconds, 4),
            })
            last_for_eps = step + 1 == len(plan) or plan[step + 1][0] != eps
            if last_for_eps:
                if verifier is not None and not (verification and verification[-1]["eps"] == eps):
                    verification.append(self._prove(verifier, Xc, yc, tlabels, robust, proved, eps, scale))
                curve.append({"eps": eps, "robust_accuracy": float(robust.mean()),
                              "verified_accuracy": float(proved.mean()) if verifier is not None else None})
                if eps == self.standard_eps:
                    robust_std = robust.copy()
                if not self.early_exit:
                    robust = clean.copy()
        if self.progress:
            self.progress("self-checks", len(plan), len(plan))
        check_info: dict[str, Any] = {}
        if self.self_checks and not exhausted:
            try:
                warnings += self._self_checks(target, Xc, yc, clean, per_attack, scale, check_info)
            except QueryBudgetExceeded:
                exhausted = True
        if exhausted:
            check_info["skipped"] = "query budget spent"
            warnings.append("the query budget ran out: robust accuracy is an upper bound and the "
                            "self-checks did not all run")
        ars = float(robust_std.mean())
        self.curve_, self.per_attack_, self.robust_ = curve, per_attack, robust_std
        self.x_adv_, self.scale_ = x_std, scale
        self.clean_accuracy_, self.ars_ = float(clean.mean()), ars
        self.warnings_ = list(dict.fromkeys(warnings))
        return AssessmentResult(
            suite="evasion",
            metrics={
                "ars": ars, "clean_accuracy": float(clean.mean()), "eps": self.standard_eps,
                "norm": self.norm, "curve": curve, "per_attack": per_attack, "points": n,
                "queries": int(target.queries - q0), "checks": check_info,
                "verification": {"method": LinearBoundVerifier.name, "ran": verifier is not None,
                                 "reason": not_verified, "per_eps": verification},
                "eps_units": "standard deviations per feature" if scale is not None else "input units",
            },
            warnings=self.warnings_,
            trustworthy=not self.warnings_,
            params={
                "attacks": [a.describe() for a in self.attacks], "eps": self.eps,
                "standard_eps": self.standard_eps, "early_exit": self.early_exit,
                "full_ensemble": self.full_ensemble, "targeted": self.targeted, "verify": self.verify,
                "random_state": self.random_state, "input_spec": target.input_spec.as_dict(),
                "access": target.access,
            },
        )

    def _prove(self, verifier: LinearBoundVerifier, X: np.ndarray, y: np.ndarray, tlabels: np.ndarray | None,
               robust: np.ndarray, proved: np.ndarray, eps: float, scale: np.ndarray | None,
               budget: float = 0.0) -> dict[str, Any]:
        """Verify the points still robust at ``eps``; mark the proved ones in ``proved``.
        ``budget``: forward passes per point the attacks still to run at ``eps`` would spend."""
        idx = np.flatnonzero(robust)
        ok, record = verify_with_probe(verifier, X[idx], y[idx], eps, self.norm, scale,
                                       None if tlabels is None else tlabels[idx], budget)
        proved[idx[ok]] = True
        log.info("verified %d of %d points at eps %g in %.2fs", record.proved, len(idx), eps, record.seconds)
        return record.as_dict()

    def _self_checks(self, target: Target, X: np.ndarray, y: np.ndarray, clean: np.ndarray,
                     per_attack: list[dict[str, Any]], scale: np.ndarray | None,
                     info: dict[str, Any]) -> list[str]:
        out: list[str] = []
        ok = np.flatnonzero(clean)
        found = [checks.determinism(target, X[ok] if len(ok) else X)]
        found.append(checks.zero_gradients(target, X[ok], y[ok]))
        kinds = {a.name: a.access for a in self.attacks}
        found.append(checks.black_box_gain(per_attack, self.standard_eps, kinds, len(X)))
        if len(ok):
            msg, info["unbounded"] = checks.unbounded(target, X[ok], y[ok], scale, self.random_state)
            found.append(msg)
        out += [m for m in found if m]
        for m in out:
            log.info("evasion self-check: %s", m)
        return out
