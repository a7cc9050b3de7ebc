"""STRIP: detecting trigger-carrying inputs at inference by superimposition.

Gao et al. (2019), "STRIP: A Defence Against Trojan Attacks on Deep Neural Networks" (ACSAC):
an input is blended with ``n_overlays`` clean held-out inputs. A clean input's prediction
changes with what is blended in (high entropy of the predictions); a trojaned input keeps
predicting the attacker's class because the trigger survives the blend (low entropy).

The decision threshold comes from clean inputs only: the ``frr`` quantile of their entropy
(the false rejection rate the defender accepts), as in the paper, which needs no triggered
examples. Black-box: only ``predict_proba`` is used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...errors import InputError
from ...findings import AssessmentResult, Finding, Severity
from ...targets.base import ACCESS_LABEL, Target

BLENDS = ("add", "average")


class STRIP:
    """Entropy of predictions on superimposed inputs (Gao et al. 2019).

    ``blend="add"`` superimposes like the paper's saturating image addition
    (``clip(x + x_clean)`` to the valid range); ``"average"`` takes ``(x + x_clean) / 2``.

    Examples::

        strip = STRIP(n_overlays=20, random_state=0).fit(target, X_clean)
        entropy = strip.entropy(target, X_suspect)      # low: likely trojaned
        flags = strip.detect(target, X_suspect)
    """

    name = "strip"
    threats = ("backdoor",)
    access = "black-box"
    requires: tuple[str, ...] = ()

    def __init__(
        self,
        *,
        n_overlays: int = 20,
        blend: str = "add",
        frr: float = 0.01,
        random_state: int = 0,
    ) -> None:
        if n_overlays < 1:
            raise InputError(f"bad n_overlays {n_overlays}: at least one overlay per input")
        if blend not in BLENDS:
            raise InputError(f"unknown blend '{blend}': choose one of {', '.join(BLENDS)}")
        if not 0.0 < frr < 0.5:
            raise InputError(f"bad frr {frr}: a false rejection rate in (0, 0.5)")
        self.n_overlays = int(n_overlays)
        self.blend = blend
        self.frr = float(frr)
        self.random_state = int(random_state)

    def get_params(self) -> dict[str, Any]:
        return {"n_overlays": self.n_overlays, "blend": self.blend, "frr": self.frr,
                "random_state": self.random_state}

    def fit(self, target: Target, X_clean: Any) -> STRIP:
        """Keep the clean overlays and set the threshold from the clean inputs' own entropy."""
        if target.access == ACCESS_LABEL:
            raise InputError("STRIP needs class probabilities but the target answers labels only")
        clean = target.input_spec.check(X_clean, where="STRIP clean data")
        if len(clean) < 2:
            raise InputError("STRIP needs clean held-out inputs to blend with: pass --data with at least 2 rows")
        self.overlays_ = clean
        spec = target.input_spec if target.input_spec.bounded else target.input_spec.complete(clean)
        self._lo = spec.lower_array().astype(np.float32)
        self._hi = spec.upper_array().astype(np.float32)
        self.clean_entropy_ = self.entropy(target, clean)
        self.threshold_ = float(np.quantile(self.clean_entropy_, self.frr))
        return self

    def entropy(self, target: Target, X: Any) -> np.ndarray:
        """Mean Shannon entropy (nats) of the predictions on ``n_overlays`` blends of each input."""
        if not hasattr(self, "overlays_"):
            raise InputError("STRIP is not fitted: call fit(target, X_clean) first")
        Xs = target.input_spec.check(X, where="STRIP inputs")
        rng = np.random.default_rng(self.random_state)
        out = np.empty(len(Xs))
        for start in range(0, len(Xs), 64):
            batch = Xs[start : start + 64]
            picks = rng.integers(0, len(self.overlays_), size=(len(batch), self.n_overlays))
            over = self.overlays_[picks]                       # (b, n, *shape)
            base = batch[:, None]
            mix = base + over if self.blend == "add" else (base + over) / 2.0
            mix = np.clip(mix, self._lo, self._hi).reshape((-1, *batch.shape[1:]))
            p = np.clip(np.asarray(target.predict_proba(mix), dtype=np.float64), 1e-12, 1.0)
            h = -(p * np.log(p)).sum(axis=1).reshape(len(batch), self.n_overlays)
            out[start : start + len(batch)] = h.mean(axis=1)
        return out

    def detect(self, target: Target, X: Any) -> np.ndarray:
        """Boolean mask: entropy below the clean-data threshold (suspected trigger)."""
        return self.entropy(target, X) < self.threshold_

    def run(self, target: Target, X: Any, *, X_clean: Any, triggered: Any | None = None) -> AssessmentResult:
        """Score ``X``; with ``triggered`` (ground truth for ``X``) also report ``strip_auc``."""
        self.fit(target, X_clean)
        h = self.entropy(target, X)
        mask = h < self.threshold_
        self.flagged_ = np.flatnonzero(mask)
        metrics: dict[str, Any] = {
            "strip_flagged_fraction": float(mask.mean()) if len(mask) else 0.0,
            "strip_threshold": self.threshold_,
            "strip_clean_entropy_mean": float(self.clean_entropy_.mean()),
        }
        if triggered is not None:
            from sklearn.metrics import roc_auc_score

            t = np.asarray(triggered, dtype=bool).ravel()
            if len(t) != len(h):
                raise InputError(f"trigger truth has {len(t)} entries for {len(h)} inputs")
            if t.any() and (~t).any():
                metrics["strip_auc"] = float(roc_auc_score(t, -h))
        frac = metrics["strip_flagged_fraction"]
        excess = frac - self.frr
        sev = Severity.HIGH if excess >= 0.04 else Severity.MEDIUM if excess >= 0.02 else Severity.INFO
        finding = Finding(
            threat_id="backdoor", severity=sev,
            title=f"STRIP: {len(self.flagged_)} of {len(h)} inputs keep their prediction under superimposition",
            detail=(f"Threshold {self.threshold_:.4f} nats is the {self.frr:.0%} quantile of clean inputs' "
                    f"entropy, so about {self.frr:.0%} of clean inputs are flagged by design."),
            metric="strip_flagged_fraction", value=frac,
            evidence={"rows": [int(i) for i in self.flagged_], **{k: v for k, v in metrics.items()}},
        )
        return AssessmentResult(suite="integrity", metrics=metrics, findings=[finding],
                                params={"strip": self.get_params()})
