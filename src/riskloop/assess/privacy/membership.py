"""Membership inference: does the model reveal which records it was trained on?

Two attacks, both scored the same way (ROC over member / non-member candidates):

- :class:`LossThresholdMIA`: the loss of the true label (Yeom et al. 2018, "Privacy Risk in
  Machine Learning: Analyzing the Connection to Overfitting"): members have lower loss.
- :class:`ReferenceModelMIA`: offline reference models trained only on population data the
  target never saw, with two test statistics: RMIA (Zarifzadeh et al. 2024, "Low-Cost
  High-Power Membership Inference Attacks") and offline LiRA with a global variance (Carlini
  et al. 2022, "Membership Inference Attacks From First Principles").

Reported (Carlini et al. 2022): ROC AUC, attacker advantage ``max(TPR - FPR)`` (as in
TensorFlow Privacy), and TPR at 1% and 0.1% FPR read from the ROC. With ``n`` non-members the
smallest non-zero FPR is ``1/n``; a level below it is reported as None together with
``lowest_reachable_fpr`` and the TPR there, never as an interpolated number.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ...errors import InputError
from ...findings import AssessmentResult, Finding, Severity
from ...targets.base import ACCESS_BLACK, ACCESS_WHITE, Target, check_data
from ._fit import learner_for

log = logging.getLogger(__name__)

FPR_LEVELS = (0.01, 0.001)
THREAT = "membership-inference"
MIN_CANDIDATES = 10


def level_key(level: float) -> str:
    """0.01 -> "tpr_at_1pct_fpr", 0.001 -> "tpr_at_0.1pct_fpr"."""
    pct = f"{level * 100:g}"
    return f"tpr_at_{pct}pct_fpr"


def roc_summary(
    member_scores: np.ndarray,
    nonmember_scores: np.ndarray,
    *,
    fpr_levels: tuple[float, ...] = FPR_LEVELS,
    grid_points: int = 60,
) -> dict[str, Any]:
    """AUC, advantage, TPR at fixed low FPRs and a log-spaced ROC for plotting.

    Higher scores mean "member". TPR at FPR level ``a`` is the largest TPR of a threshold
    whose FPR does not exceed ``a`` (what an attacker who must stay under ``a`` can reach).
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    m = np.asarray(member_scores, dtype=np.float64).ravel()
    n = np.asarray(nonmember_scores, dtype=np.float64).ravel()
    if len(m) == 0 or len(n) == 0:
        raise InputError("membership scoring needs at least one member and one non-member")
    labels = np.r_[np.ones(len(m)), np.zeros(len(n))]
    scores = np.nan_to_num(np.r_[m, n], nan=-np.inf, posinf=np.finfo(np.float64).max,
                           neginf=-np.finfo(np.float64).max)
    fpr, tpr, _ = roc_curve(labels, scores, drop_intermediate=False)
    floor = 1.0 / len(n)
    out: dict[str, Any] = {
        "membership_auc": float(roc_auc_score(labels, scores)),
        "membership_advantage": float(np.max(tpr - fpr)),
        # The advantage is a two-sample KS statistic: this much arises by chance alone (95%).
        "advantage_chance_level": float(1.36 * np.sqrt((len(m) + len(n)) / (len(m) * len(n)))),
        "n_members": len(m), "n_nonmembers": len(n),
        "lowest_reachable_fpr": floor,
        "tpr_at_lowest_reachable_fpr": float(tpr[fpr <= floor + 1e-12].max()),
    }
    for level in fpr_levels:
        reachable = level + 1e-12 >= floor
        out[level_key(level)] = float(tpr[fpr <= level + 1e-12].max()) if reachable else None
    # Log-spaced FPR grid from the floor to 1 (the log-scale ROC of Carlini et al.).
    grid = np.unique(np.r_[0.0, np.geomspace(floor, 1.0, grid_points)])
    tpr_grid = [float(tpr[fpr <= g + 1e-12].max()) for g in grid]
    out["roc"] = {"fpr": [float(g) for g in grid], "tpr": tpr_grid}
    return out


def severity_for(advantage: float, tpr_1pct: float | None) -> Severity:
    """Severity from advantage and TPR at 1% FPR (the policy's default limits are 0.10, 0.05)."""
    t = tpr_1pct or 0.0
    if advantage >= 0.30 or t >= 0.20:
        return Severity.HIGH
    if advantage >= 0.10 or t >= 0.05:
        return Severity.MEDIUM
    if advantage >= 0.05 or t >= 0.02:
        return Severity.LOW
    return Severity.INFO


def _check_membership(target: Target, X: Any, y: Any, member: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if target.access not in (ACCESS_BLACK, ACCESS_WHITE):
        raise InputError(
            f"membership inference needs class probabilities but the target is {target.access}: "
            "serve probabilities (or give white-box access)"
        )
    Xc, yc = check_data(target, X, y, where="membership candidates")
    mask = np.asarray(member, dtype=bool).ravel()
    if len(mask) != len(Xc):
        raise InputError(f"membership mask has {len(mask)} entries for {len(Xc)} candidates")
    if mask.sum() < MIN_CANDIDATES or (~mask).sum() < MIN_CANDIDATES:
        raise InputError(
            f"membership inference needs at least {MIN_CANDIDATES} members and {MIN_CANDIDATES} "
            f"non-members, got {int(mask.sum())} and {int((~mask).sum())}: supply the training "
            "data (--trained-on at registration) and held-out data (--data)"
        )
    return Xc, yc, mask


def confidence_terms(proba: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``log p_y`` and ``log(1 - p_y)``, precise even when ``p_y`` rounds to 1.

    ``1 - p_y`` is taken as the sum of the other classes' probabilities, which keeps its
    digits when the model is very confident (as it is on the records it memorised).
    """
    proba = np.clip(np.asarray(proba, dtype=np.float64), 0.0, None)
    rows = np.arange(len(y))
    p_y = np.clip(proba[rows, y], 1e-300, None)
    others = proba.copy()
    others[rows, y] = 0.0
    q = np.clip(others.sum(axis=1), 1e-300, None)
    # log(p_y / (p_y + q)): through log1p when q is the small term, so no digits are lost.
    log_p = np.where(q < p_y, -np.log1p(q / p_y), np.log(p_y / (p_y + q)))
    log_q = np.log(q) - np.where(q < p_y, np.log1p(q / p_y) + np.log(p_y), np.log(p_y + q))
    return log_p, log_q


def logit_confidence(target: Target, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Carlini et al.'s ``phi = log(p_y / (1 - p_y))``, computed stably."""
    log_p, log_q = confidence_terms(target.predict_proba(X), y)
    return log_p - log_q


def _finding(attack: str, summary: dict[str, Any]) -> Finding:
    adv = summary["membership_advantage"]
    t1 = summary.get(level_key(0.01))
    sev = severity_for(adv, t1)
    chance = summary["advantage_chance_level"]
    within_chance = adv <= chance and (t1 is None or t1 <= 0.02)
    if within_chance:  # indistinguishable from a coin flip at this sample size
        sev = Severity.INFO
    t1_text = f"{t1:.3f}" if t1 is not None else f"n/a (lowest FPR {summary['lowest_reachable_fpr']:.4f})"
    return Finding(
        threat_id=THREAT, severity=sev,
        title=f"{attack}: membership advantage {adv:.3f}, AUC {summary['membership_auc']:.3f}",
        detail=(f"On {summary['n_members']} members and {summary['n_nonmembers']} non-members the "
                f"{attack} attack reaches TPR {t1_text} at 1% FPR. Chance alone gives an advantage "
                f"up to {chance:.3f} at this sample size"
                + (" and this one is within it." if within_chance else ".")),
        metric="membership_advantage", value=adv,
        evidence={k: summary[k] for k in ("membership_auc", "membership_advantage",
                                          level_key(0.01), level_key(0.001),
                                          "lowest_reachable_fpr", "advantage_chance_level",
                                          "n_members", "n_nonmembers")},
    )


class LossThresholdMIA:
    """Loss-threshold membership inference (Yeom et al. 2018).

    A candidate's score is its loss ``-log p(y | x)`` under the target, negated: members of
    the training set tend to have lower loss. Candidates are ranked by the logit-scaled
    confidence ``log(p / (1 - p))``, which orders them exactly as the loss does but keeps
    apart confident predictions whose ``p`` rounds to 1. Needs probabilities (black-box) and labels.

    Examples::

        mia = LossThresholdMIA()
        result = mia.run(target, X, y, member=is_member)
        mia.metrics_["membership_auc"]
    """

    name = "loss-threshold"
    threats = (THREAT,)
    access = ACCESS_BLACK
    requires: tuple[str, ...] = ()

    def __init__(self, *, fpr_levels: tuple[float, ...] = FPR_LEVELS) -> None:
        self.fpr_levels = tuple(fpr_levels)

    def run(self, target: Target, X: Any, y: Any, *, member: Any) -> AssessmentResult:
        Xc, yc, mask = _check_membership(target, X, y, member)
        # Ranked by phi = log(p_y / (1 - p_y)), a monotone function of the loss -log p_y with
        # no ties where p_y rounds to 1.
        self.scores_ = logit_confidence(target, Xc, yc)
        self.metrics_ = roc_summary(self.scores_[mask], self.scores_[~mask],
                                    fpr_levels=self.fpr_levels)
        return AssessmentResult(
            suite="privacy", metrics=dict(self.metrics_), findings=[_finding(self.name, self.metrics_)],
            params={"attack": self.name, "fpr_levels": list(self.fpr_levels)},
        )


class ReferenceModelMIA:
    """Offline reference-model membership inference: RMIA and offline LiRA.

    ``n_reference`` models of the target's architecture (see ``_fit.learner_for``) are trained,
    each on a random ``reference_fraction`` of the population data, which the target never saw.
    All candidates are therefore "out" for every reference model (the offline setting).

    - RMIA (Zarifzadeh et al. 2024): ``Pr(x) = ((1 + a) * mean_ref p_ref(y|x) + (1 - a)) / 2``
      approximates the marginal from out-models only; the score is
      ``p_target(y|x) / Pr(x)``. RMIA compares this ratio with that of population samples z;
      with one z set shared by all candidates that test is monotone in the ratio, so the ROC
      is computed from the ratio itself.
    - Offline LiRA (Carlini et al. 2022) with a global variance: the logit-scaled confidence
      ``phi = log(p / (1 - p))`` under the target, standardised by the reference models'
      mean for that candidate and their pooled standard deviation.

    Examples::

        mia = ReferenceModelMIA(n_reference=4, random_state=0)
        result = mia.run(target, X, y, member=is_member, X_population=Xp, y_population=yp)
    """

    name = "reference-model"
    threats = (THREAT,)
    access = ACCESS_BLACK
    requires = ("torch",)

    def __init__(
        self,
        *,
        n_reference: int = 4,
        reference_fraction: float = 0.5,
        rmia_a: float = 0.3,
        architecture: str = "auto",
        epochs: int = 30,
        batch_size: int = 64,
        lr: float = 1e-3,
        fpr_levels: tuple[float, ...] = FPR_LEVELS,
        random_state: int = 0,
    ) -> None:
        if n_reference < 1:
            raise InputError(f"bad n_reference {n_reference}: at least one reference model")
        if not 0.0 < reference_fraction <= 1.0:
            raise InputError(f"bad reference_fraction {reference_fraction}: must be in (0, 1]")
        if not 0.0 <= rmia_a <= 1.0:
            raise InputError(f"bad rmia_a {rmia_a}: must be in [0, 1]")
        self.n_reference = int(n_reference)
        self.reference_fraction = float(reference_fraction)
        self.rmia_a = float(rmia_a)
        self.architecture = architecture
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.fpr_levels = tuple(fpr_levels)
        self.random_state = int(random_state)

    def get_params(self) -> dict[str, Any]:
        return {"n_reference": self.n_reference, "reference_fraction": self.reference_fraction,
                "rmia_a": self.rmia_a, "architecture": self.architecture, "epochs": self.epochs,
                "batch_size": self.batch_size, "lr": self.lr, "random_state": self.random_state}

    def run(
        self, target: Target, X: Any, y: Any, *, member: Any, X_population: Any, y_population: Any
    ) -> AssessmentResult:
        Xc, yc, mask = _check_membership(target, X, y, member)
        Xp, yp = check_data(target, X_population, y_population, where="population data")
        if len(Xp) < 2 * len(target.classes):
            raise InputError(
                f"reference models need population data the target never saw: {len(Xp)} rows "
                f"is too few for {len(target.classes)} classes"
            )
        rng = np.random.default_rng(self.random_state)
        size = max(len(target.classes), int(round(self.reference_fraction * len(Xp))))
        ref_logp = np.empty((self.n_reference, len(Xc)))
        ref_logq = np.empty((self.n_reference, len(Xc)))
        for i in range(self.n_reference):
            rows = rng.choice(len(Xp), size=size, replace=False)
            learner = learner_for(target, architecture=self.architecture, epochs=self.epochs,
                                  batch_size=self.batch_size, lr=self.lr,
                                  random_state=self.random_state + 1 + i)
            learner.fit(Xp[rows], yp[rows])
            ref_logp[i], ref_logq[i] = confidence_terms(learner.predict_proba(Xc), yc)
            log.info("reference model %d/%d trained on %d population rows", i + 1,
                     self.n_reference, size)
        logp_t, logq_t = confidence_terms(target.predict_proba(Xc), yc)
        # RMIA, offline approximation of Pr(x) from out-models.
        pr_x = 0.5 * ((1 + self.rmia_a) * np.exp(ref_logp).mean(axis=0) + (1 - self.rmia_a))
        rmia = logp_t - np.log(pr_x)
        # Offline LiRA with a global (pooled) standard deviation.
        phi_t = logp_t - logq_t
        phi_r = ref_logp - ref_logq
        sigma = float(np.sqrt(np.mean(phi_r.var(axis=0)))) if self.n_reference > 1 else float(phi_r.std())
        lira = (phi_t - phi_r.mean(axis=0)) / max(sigma, 1e-6)
        self.scores_ = {"rmia": rmia, "lira-offline": lira}
        self.attack_metrics_ = {
            name: roc_summary(s[mask], s[~mask], fpr_levels=self.fpr_levels)
            for name, s in self.scores_.items()
        }
        best = max(self.attack_metrics_, key=lambda k: self.attack_metrics_[k]["membership_auc"])
        self.metrics_ = dict(self.attack_metrics_[best], attack=best)
        return AssessmentResult(
            suite="privacy", metrics=dict(self.metrics_),
            findings=[_finding(name, m) for name, m in self.attack_metrics_.items()],
            params={"attack": self.name, **self.get_params()},
        )


def combine(attacks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The privacy suite's headline numbers: for each metric, the strongest attack's value.

    ``roc`` comes from the attack with the highest AUC (``strongest_attack``); every attack's
    own numbers stay under ``attacks``.
    """
    if not attacks:
        raise InputError("no membership attack ran")
    strongest = max(attacks, key=lambda k: attacks[k]["membership_auc"])
    out: dict[str, Any] = {}
    keys = ["membership_advantage", "membership_auc", *[level_key(v) for v in FPR_LEVELS],
            "tpr_at_lowest_reachable_fpr"]
    for k in keys:
        values = [a[k] for a in attacks.values() if a.get(k) is not None]
        out[k] = max(values) if values else None
    out["strongest_attack"] = strongest
    out["roc"] = attacks[strongest]["roc"]
    first = attacks[strongest]
    for k in ("lowest_reachable_fpr", "advantage_chance_level", "n_members", "n_nonmembers"):
        out[k] = first[k]
    out["attacks"] = {name: {k: v for k, v in a.items() if k != "roc"} for name, a in attacks.items()}
    return out


__all__ = ["LossThresholdMIA", "ReferenceModelMIA", "combine", "level_key", "roc_summary",
           "severity_for"]
