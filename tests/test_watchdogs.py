"""Watchdogs on real data: calibrated false-alarm rates, and the right alert for each attack."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.covariance import LedoitWolf
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from riskloop import InputError
from riskloop.monitor import (
    AdversarialDetectorWatchdog,
    ConfidenceSpikeWatchdog,
    InputOutlierWatchdog,
    ledoit_wolf,
)


def binomial_slack(p: float, n: int) -> float:
    """Three standard deviations of a measured rate around ``p`` over ``n`` trials."""
    return 3 * math.sqrt(p * (1 - p) / n)


def windows(A: np.ndarray, k: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [A[rng.integers(0, len(A), size)] for _ in range(k)]


@pytest.fixture(scope="module")
def cancer() -> dict[str, np.ndarray]:
    X, y = load_breast_cancer(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    return {"train": Xtr, "cal": Xte[:150], "eval": Xte[150:]}


@pytest.fixture(scope="module")
def digits_model() -> dict[str, object]:
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    model = LogisticRegression(max_iter=2000, C=0.1).fit(Xtr, ytr)
    return {"model": model, "Xtr": Xtr, "ytr": ytr, "Xcal": Xte[:450], "ycal": yte[:450],
            "Xev": Xte[450:], "yev": yte[450:]}


def test_ledoit_wolf_matches_scikit_learn(cancer: dict[str, np.ndarray]) -> None:
    Z = cancer["train"] / cancer["train"].std(axis=0)
    cov, shrink = ledoit_wolf(Z)
    lw = LedoitWolf().fit(Z)
    assert shrink == pytest.approx(lw.shrinkage_, rel=1e-10)
    np.testing.assert_allclose(cov, lw.covariance_, rtol=1e-9, atol=1e-12)
    wd = InputOutlierWatchdog(standardize=False).fit(cancer["train"])
    lw_raw = LedoitWolf().fit(cancer["train"])
    np.testing.assert_allclose(wd.score(cancer["eval"]), lw_raw.mahalanobis(cancer["eval"]),
                               rtol=1e-6)


def test_outlier_watchdog_calibrated_and_alerts_on_shift(cancer: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(0)
    wd = InputOutlierWatchdog().fit(cancer["train"])
    wd.calibrate(windows(cancer["cal"], 400, 40, rng), target_fpr=0.02)
    assert wd.fpr_ <= 0.02 + binomial_slack(0.02, 200)
    assert 0 <= wd.row_fpr_ <= 0.03
    clean = windows(cancer["eval"], 200, 40, rng)
    clean_rate = np.mean([bool(wd.update(w)) for w in clean])
    assert clean_rate <= 0.02 + binomial_slack(0.02, 200)
    sd = cancer["train"].std(axis=0)
    noisy = [w + rng.normal(0, 0.3, w.shape) * sd for w in windows(cancer["eval"], 50, 40, rng)]
    scaled = [w * 1.15 for w in windows(cancer["eval"], 50, 40, rng)]
    for attack in (noisy, scaled):
        alerts = [wd.update(w) for w in attack]
        assert np.mean([bool(a) for a in alerts]) >= 0.95
        a = next(a for a in alerts if a)[0]
        assert a.kind == "input-outliers" and "evasion" in a.threats and a.score > a.threshold
    # a few far-out rows are flagged per request even when the window stays calm
    flags = wd.flags(np.vstack([cancer["eval"][:5], cancer["eval"][5:7] * 3]))
    assert flags[-2:].all()
    again = InputOutlierWatchdog.from_dict(json.loads(json.dumps(wd.to_dict())))
    np.testing.assert_allclose(again.score(cancer["eval"]), wd.score(cancer["eval"]))
    assert again.fpr_ == wd.fpr_ and again.threshold_ == wd.threshold_


def test_confidence_spike_watchdog_on_a_real_model(digits_model: dict) -> None:
    m, rng = digits_model["model"], np.random.default_rng(1)
    P_cal = m.predict_proba(digits_model["Xcal"])
    P_ev = m.predict_proba(digits_model["Xev"])
    Xev = digits_model["Xev"]
    cs = ConfidenceSpikeWatchdog().fit(P_cal[:225])
    assert cs.p0_ == pytest.approx(0.1, abs=0.01) and cs.p1_ == pytest.approx(3 * cs.p0_)
    cs.calibrate(windows(P_cal[225:], 400, 100, rng), target_fpr=0.02)
    assert cs.fpr_ <= 0.02 + binomial_slack(0.02, 200)
    false_alarms = 0
    for w in windows(P_ev, 200, 100, rng):
        cs.reset()
        false_alarms += bool(cs.update(w))
    assert false_alarms / 200 <= 0.02 + binomial_slack(0.02, 200)
    delays = []
    for _ in range(30):
        cs.reset()
        i, j = rng.integers(0, len(Xev), (2, 60))
        blended = m.predict_proba(0.5 * Xev[i] + 0.5 * Xev[j])  # ambiguous inputs
        alerts = cs.update(blended)
        assert alerts and alerts[0].kind == "low-confidence-spike"
        delays.append(alerts[0].evidence["position"])
    assert np.median(delays) <= 20  # detected within about 20 queries of the onset
    state = json.loads(json.dumps(cs.to_dict()))
    assert ConfidenceSpikeWatchdog.from_dict(state).threshold_ == cs.threshold_


def squeeze_detector(model: LogisticRegression):  # type: ignore[no-untyped-def]
    """Feature squeezing (Xu et al. 2018): L1 change of the output under 1-bit depth."""

    def score(X: np.ndarray) -> np.ndarray:
        A = np.asarray(X).reshape(len(X), -1)
        return np.abs(model.predict_proba(A) - model.predict_proba(np.round(A * 2) / 2)).sum(1)

    return score


def fgsm(model: LogisticRegression, X: np.ndarray, y: np.ndarray, eps: float) -> np.ndarray:
    """One signed-gradient step on the cross-entropy of a multinomial logistic regression."""
    P = model.predict_proba(X)
    P[np.arange(len(X)), y] -= 1.0
    return np.clip(X + eps * np.sign(P @ model.coef_), 0.0, 1.0)


def test_adversarial_detector_hook(digits_model: dict) -> None:
    m = digits_model["model"]
    wd = AdversarialDetectorWatchdog(detector=squeeze_detector(m), detector_name="squeeze-1bit")
    Xcal = digits_model["Xcal"]
    wd.calibrate([Xcal[i : i + 30] for i in range(0, 450, 30)], target_fpr=0.05)
    assert wd.fpr_ <= 0.05 + binomial_slack(0.05, 210)
    Xev, yev = digits_model["Xev"], digits_model["yev"]
    clean_rate = len(wd.update(Xev)) / len(Xev)
    adv = fgsm(m, Xev, yev, 0.2)
    assert m.score(adv, yev) < 0.5  # the attack works
    alerts = wd.update(adv)
    assert len(alerts) / len(adv) >= 4 * max(clean_rate, 0.05)
    assert {a.kind for a in alerts} == {"adversarial-input"} and alerts[0].threats == ("evasion",)
    assert wd.to_dict()["detector"] == "squeeze-1bit"
    with pytest.raises(InputError, match="one finite score"):
        AdversarialDetectorWatchdog(detector=lambda X: np.zeros(1)).score(Xev[:3])


def test_watchdogs_refuse_bad_use(cancer: dict[str, np.ndarray]) -> None:
    wd = InputOutlierWatchdog()
    with pytest.raises(InputError, match="call fit"):
        wd.score(cancer["eval"])
    wd.fit(cancer["train"])
    with pytest.raises(InputError, match="call calibrate"):
        wd.update(cancer["eval"])
    with pytest.raises(InputError, match="fitted on 30"):
        wd.score(cancer["eval"][:, :5])
    bad = cancer["eval"][:3].copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        wd.score(bad)
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="cannot calibrate a false-alarm rate of 0.001"):
        wd.calibrate(windows(cancer["cal"], 40, 20, rng), target_fpr=0.001)
    with pytest.raises(InputError, match="target_fpr"):
        wd.calibrate(windows(cancer["cal"], 40, 20, rng), target_fpr=0.7)
