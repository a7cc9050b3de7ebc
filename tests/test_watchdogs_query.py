"""Per-client query-pattern watchdog: clean clients stay quiet, extraction and probing alert."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from riskloop import InputError
from riskloop.monitor import QueryPatternWatchdog


@pytest.fixture(scope="module")
def setup() -> dict[str, object]:
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    model = LogisticRegression(max_iter=2000, C=0.1).fit(Xtr, ytr)
    rng = np.random.default_rng(0)
    wd = QueryPatternWatchdog(standardize=False, random_state=0).fit(Xtr, model.predict_proba(Xtr))

    def legit(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A client with its own workload: five digit classes, 40-150 queries, 0.2-1 q/s."""
        pool = np.flatnonzero(np.isin(y, rng.choice(10, 5, replace=False)))
        idx = rng.choice(pool, min(int(rng.integers(40, 150)), len(pool)), replace=False)
        times = np.cumsum(rng.exponential(1 / rng.uniform(0.2, 1.0), len(idx)))
        return X[idx], model.predict_proba(X[idx]), times

    sessions = [legit(Xte[:450], yte[:450]) for _ in range(240)]
    wd.calibrate(sessions, target_fpr=0.05, extraction_queries=2000)
    fresh = [legit(Xte[450:], yte[450:]) for _ in range(100)]
    return {"wd": wd, "model": model, "Xev": Xte[450:], "yev": yte[450:], "fresh": fresh,
            "rng": rng}


def replay(wd: QueryPatternWatchdog, model: LogisticRegression, client: str,
           X: np.ndarray, times: np.ndarray) -> set[str]:
    kinds: set[str] = set()
    P = model.predict_proba(X)
    for i, t in enumerate(times):
        kinds |= {a.kind for a in wd.update(client, X[i : i + 1], P[i : i + 1], now=t)}
    return kinds


def test_calibration_and_clean_clients(setup: dict) -> None:
    wd = setup["wd"]
    assert set(wd.thresholds_) == {"volume", "near_duplicates", "boundary", "coverage"}
    assert wd.fpr_ <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 120)
    alerted = sum(bool(replay(wd, setup["model"], f"legit-{i}", X, t))
                  for i, (X, _, t) in enumerate(setup["fresh"]))
    assert alerted / 100 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 100)


def test_synthetic_augmentation_client_is_flagged(setup: dict) -> None:
    """Papernot-style extraction: seeds, then rounds of x + 0.1 sign(gradient)."""
    wd, m, rng = setup["wd"], setup["model"], setup["rng"]
    aug = setup["Xev"][rng.choice(len(setup["Xev"]), 10, replace=False)]
    for _ in range(5):
        aug = np.vstack([aug, np.clip(aug + 0.1 * np.sign(m.coef_[m.predict(aug)]), 0, 1)])
    kinds = replay(wd, m, "augmenter", aug, np.arange(len(aug)) * 1.0)  # slow: no volume alert
    assert "near-duplicate-queries" in kinds and "query-volume" not in kinds
    assert "extraction-budget" not in kinds  # 320 queries < half of 2000


def test_boundary_walking_client_is_flagged(setup: dict) -> None:
    """Decision-based probing: bisect between images of two classes (HopSkipJump's first step)."""
    wd, m, rng = setup["wd"], setup["model"], setup["rng"]
    Xev, yev = setup["Xev"], setup["yev"]
    queries = []
    while len(queries) < 150:
        i, j = rng.choice(len(Xev), 2, replace=False)
        if yev[i] == yev[j]:
            continue
        lo, hi, start = 0.0, 1.0, m.predict(Xev[i][None])[0]
        for _ in range(10):
            mid = (lo + hi) / 2
            x = (1 - mid) * Xev[i] + mid * Xev[j]
            queries.append(x)
            lo, hi = (mid, hi) if m.predict(x[None])[0] == start else (lo, mid)
    kinds = replay(wd, m, "walker", np.array(queries), np.arange(len(queries)) * 2.0)
    assert "boundary-probing" in kinds


def test_fast_sweeping_client_is_flagged(setup: dict) -> None:
    wd, m, rng = setup["wd"], setup["model"], setup["rng"]
    sweep = setup["Xev"][rng.choice(len(setup["Xev"]), 400, replace=False)]
    kinds = replay(wd, m, "sweeper", sweep, np.arange(400) * 0.1)  # 10 queries a second
    assert {"query-volume", "input-space-sweep"} <= kinds
    budget = QueryPatternWatchdog.from_dict(json.loads(json.dumps(wd.to_dict())))
    budget.budget_ = 150.0
    alerts = [a for x in sweep[:200]
              for a in budget.update("b", x[None], m.predict_proba(x[None]), now=0.0)]
    assert [a.kind for a in alerts].count("extraction-budget") == 1
    assert next(a for a in alerts if a.kind == "extraction-budget").evidence["queries"] == 150


def test_state_round_trip_and_bad_input(setup: dict) -> None:
    wd, m = setup["wd"], setup["model"]
    again = QueryPatternWatchdog.from_dict(json.loads(json.dumps(wd.to_dict())))
    assert again.thresholds_ == wd.thresholds_ and again.radius_ == wd.radius_
    x = setup["Xev"][:30]
    a = [k.kind for k in wd.update("same", x, m.predict_proba(x), now=5.0)]
    b = [k.kind for k in again.update("same", x, m.predict_proba(x), now=5.0)]
    assert a == b
    assert wd.client_features("same")["volume"] == 30
    with pytest.raises(InputError, match="probability rows"):
        wd.update("c", x, m.predict_proba(x[:3]))
    with pytest.raises(InputError, match="no queries recorded"):
        wd.client_features("nobody")
    with pytest.raises(InputError, match="call calibrate"):
        QueryPatternWatchdog().fit(x, m.predict_proba(x)).update("c", x, m.predict_proba(x))
