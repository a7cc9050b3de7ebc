"""Self-checks that catch evaluations which overstate robustness (gradient masking and kin).

Each check returns a warning text, or None. Any warning marks the run as not trustworthy.
The checks follow AutoAttack's flags (Croce & Hein 2020) and the checklist of Carlini et al.,
"On Evaluating Adversarial Robustness" (2019): randomised outputs, zero gradients, a
black-box attack beating the white-box ones, and unbounded attacks that do not reach 0%.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ...targets.base import Target, is_white_box, predict
from .base import perturbation_norm

log = logging.getLogger(__name__)

DETERMINISM_ROWS = 64
DETERMINISM_TOL = 1e-6
GRADIENT_ROWS = 256
ZERO_GRADIENT_SHARE = 0.05
BLACK_BOX_GAIN = 0.01
BLACK_BOX_RELATIVE = 0.10
UNBOUNDED_ROWS = 100
UNBOUNDED_SURVIVORS = 0.02


def determinism(target: Target, X: np.ndarray) -> str | None:
    """Identical queries must give identical outputs."""
    rows = X[:DETERMINISM_ROWS]
    diff = float(np.abs(target.predict_proba(rows) - target.predict_proba(rows)).max())
    if diff > DETERMINISM_TOL:
        return (
            f"outputs change between identical queries (max difference {diff:.2g}): a randomised "
            "model hides its gradients from attacks; robust accuracy is likely overstated"
        )
    return None


def zero_gradients(target: Target, X: np.ndarray, y: np.ndarray) -> str | None:
    """The input gradient of the loss must not vanish on most points (white-box only)."""
    if not is_white_box(target) or len(X) == 0:
        return None
    g = target.input_gradient(X[:GRADIENT_ROWS], y[:GRADIENT_ROWS])  # type: ignore[attr-defined]
    norms = np.abs(g.reshape(len(g), -1)).max(axis=1)
    share = float((norms == 0).mean())
    if share > ZERO_GRADIENT_SHARE:
        return (
            f"{share:.0%} of the correctly classified points have a zero input gradient: "
            "gradient attacks cannot move them (gradient masking); robust accuracy is likely overstated"
        )
    return None


def black_box_gain(per_attack: list[dict[str, Any]], eps: float, kinds: dict[str, str], n: int) -> str | None:
    """At the standard eps, black-box attacks that ran after the white-box ones should find
    little: a warning when they fool more than 1% of all points *and* more than 10% as many
    points as the white-box attacks did up to that eps (AutoAttack flags any gain; the
    relative margin keeps a short white-box budget from raising false alarms)."""
    white_ran = any(kinds.get(r["attack"]) == "white-box" and r["eps"] == eps for r in per_attack)
    if not white_ran or n == 0:
        return None
    found = sum(r["fooled"] for r in per_attack
                if r["eps"] == eps and kinds.get(r["attack"]) != "white-box")
    white = sum(r["fooled"] for r in per_attack
                if r["eps"] <= eps and kinds.get(r["attack"]) == "white-box")
    if found / n > BLACK_BOX_GAIN and found > BLACK_BOX_RELATIVE * white:
        return (
            f"black-box attacks fooled {found} points ({found / n:.1%}) that every white-box attack "
            f"missed at eps {eps:g} (white-box: {white}): the gradients mislead (gradient masking); "
            "trust the lower number"
        )
    return None


def unbounded(target: Target, X: np.ndarray, y: np.ndarray, scale: np.ndarray | None,
              random_state: int | None) -> tuple[str | None, dict[str, Any]]:
    """With a budget as wide as the valid range, an attack must fool (almost) every point."""
    spec = target.input_spec
    if spec.frozen_mask().any():
        return None, {"skipped": "frozen features"}
    if not is_white_box(target) and getattr(target, "query_budget", None) is not None:
        return None, {"skipped": "query budget"}
    if target.access == "label-only":
        return None, {"skipped": "label-only target"}
    width = (spec.upper_array() - spec.lower_array())
    s = np.ones_like(width) if scale is None else np.broadcast_to(scale, width.shape)
    eps = float(np.max(width / s))
    rows = X[:UNBOUNDED_ROWS]
    labels = y[:UNBOUNDED_ROWS]
    if is_white_box(target):
        from .gradient import PGD

        attack: Any = PGD(eps=eps, steps=20, random_start=True, random_state=random_state)
    else:
        from .square import SquareAttack

        attack = SquareAttack(eps=eps, queries=200, random_state=random_state)
    out = attack.attack(target, rows, labels, scale=scale)
    survivors = float((~out.success).mean()) if len(rows) else 0.0
    info = {"eps": eps, "attack": attack.name, "points": len(rows), "survivors": survivors}
    if survivors > UNBOUNDED_SURVIVORS:
        return (
            f"{survivors:.0%} of points survive an attack with eps {eps:g} (the whole valid range): "
            "accuracy should reach zero as eps grows, so the attacks are being blocked"
        ), info
    return None, info


def verify(target: Target, X: np.ndarray, y: np.ndarray, x_adv: np.ndarray, claimed: np.ndarray,
           t: np.ndarray | None, eps: float, norm: str, scale: np.ndarray | None) -> np.ndarray:
    """Re-check every claimed adversarial example: goal reached by a fresh query, inside the
    eps ball and the valid range, frozen features unchanged. Returns the verified mask."""
    ok = claimed.copy()
    idx = np.flatnonzero(claimed)
    if len(idx) == 0:
        return ok
    spec = target.input_spec
    xa, x0 = x_adv[idx], X[idx]
    pred = predict(target, xa)
    goal = pred == t[idx] if t is not None else pred != y[idx]
    size = perturbation_norm(xa - x0, norm, scale)
    inside = size <= eps * (1 + 1e-5) + 1e-6
    lo, hi = spec.lower_array(), spec.upper_array()
    in_range = ((xa >= lo - 1e-6) & (xa <= hi + 1e-6)).reshape(len(idx), -1).all(axis=1)
    frozen = spec.frozen_mask()
    still = (xa == x0)[:, frozen].reshape(len(idx), -1).all(axis=1) if frozen.any() else True
    ok[idx] = goal & inside & in_range & still
    return ok
