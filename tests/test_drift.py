"""Drift engine: golden values (Evidently conventions), agreement with scipy, properties."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from scipy.spatial.distance import jensenshannon

from riskloop import InputError
from riskloop.monitor import (
    DataDrift,
    PerformanceDrift,
    ReferenceProfile,
    prediction_drift,
    prediction_profile,
)


@pytest.fixture(scope="module")
def golden_numeric() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    ref = rng.normal(0, 1, 10000)
    cur = rng.normal(0.25, 1.1, 10000)
    return ref, cur


def _score(ref: object, cur: object, **kw: object):  # type: ignore[no-untyped-def]
    fit_kw = {k: kw.pop(k) for k in ("sample_size", "categorical", "n_bins") if k in kw}
    profile = ReferenceProfile.fit(ref, **fit_kw)  # type: ignore[arg-type]
    return DataDrift(**kw).run(profile, cur)  # type: ignore[arg-type]


def test_evidently_golden_numeric(golden_numeric: tuple[np.ndarray, np.ndarray]) -> None:
    ref, cur = golden_numeric
    f = _score({"v": ref}, {"v": cur}, binning="evidently", sample_size=None).feature("v")
    assert f.bins == 16  # Sturges over 20,000 values
    assert f.psi == pytest.approx(0.089570, abs=1e-6)
    assert f.kl == pytest.approx(0.040609, abs=1e-6)
    assert f.js == pytest.approx(0.104041, abs=1e-6)
    assert f.wasserstein == pytest.approx(0.281169, abs=1e-6)
    assert not f.drifted  # PSI 0.0896 < 0.1, as in Evidently


def test_evidently_golden_categorical_new_category() -> None:
    ref = np.array(["a"] * 600 + ["b"] * 400)
    cur = np.array(["a"] * 500 + ["b"] * 400 + ["c"] * 100)
    for binning in ("evidently", "quantile"):
        f = _score({"c": ref}, {"c": cur}, binning=binning).feature("c")
        assert f.psi == pytest.approx(0.708317, abs=1e-6)
        assert f.kl == pytest.approx(0.108591, abs=1e-6)
        assert f.unseen == ["c"] and f.drifted
    by_hand = 0.1 * math.log(0.6 / 0.5) + (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert f.psi == pytest.approx(by_hand, abs=1e-12)


def test_evidently_golden_categorical_shares() -> None:
    rng = np.random.default_rng(42)
    rng.normal(0, 1, 10000), rng.normal(0.25, 1.1, 10000)  # continue the same stream
    ref = rng.choice(list("abcd"), 5000, p=[0.4, 0.3, 0.2, 0.1])
    cur = rng.choice(list("abcd"), 5000, p=[0.3, 0.3, 0.25, 0.15])
    f = _score({"c": ref}, {"c": cur}, binning="evidently").feature("c")
    assert f.psi == pytest.approx(0.068848, abs=1e-6)
    assert f.kl == pytest.approx(0.034221, abs=1e-6)
    assert f.js == pytest.approx(0.092528, abs=1e-6)


def test_reference_deciles_contrast(golden_numeric: tuple[np.ndarray, np.ndarray]) -> None:
    ref, cur = golden_numeric
    f = _score({"v": ref}, {"v": cur}, sample_size=None).feature("v")
    assert f.bins == 10
    assert f.psi == pytest.approx(0.079479, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ks_and_wasserstein_agree_with_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_ref, n_cur = int(rng.integers(50, 3000)), int(rng.integers(20, 3000))
    ref = rng.gamma(2.0, 1.0, n_ref)
    cur = rng.gamma(2.0 + seed * 0.2, 1.1, n_cur)
    ref[:10] = np.round(ref[:10])  # some ties
    cur[:10] = np.round(cur[:10])
    f = _score({"v": ref}, {"v": cur}, sample_size=None).feature("v")
    ks = stats.ks_2samp(ref, cur, method="asymp")
    assert f.ks == pytest.approx(ks.statistic, abs=1e-12)
    assert f.ks_p == pytest.approx(ks.pvalue, rel=1e-9, abs=1e-300)
    w = stats.wasserstein_distance(ref, cur) / np.std(ref)
    assert f.wasserstein == pytest.approx(w, rel=1e-9)


def test_integer_columns_with_heavy_ties_agree_with_scipy() -> None:
    rng = np.random.default_rng(7)
    ref = rng.integers(0, 6, 800).astype(float)
    cur = rng.integers(1, 7, 500).astype(float)
    f = _score({"v": ref}, {"v": cur}, sample_size=None).feature("v")
    assert f.ks == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=1e-12)
    w = stats.wasserstein_distance(ref, cur) / np.std(ref)
    assert f.wasserstein == pytest.approx(w, rel=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    ref=st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=60),
    cur=st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=60),
)
def test_property_order_statistics_match_scipy(ref: list[float], cur: list[float]) -> None:
    r, c = np.array(ref), np.array(cur)
    f = _score({"v": r}, {"v": c}, sample_size=None, stats=("ks", "wasserstein"),
               stat="ks").feature("v")
    assert f.ks == pytest.approx(stats.ks_2samp(r, c, method="asymp").statistic, abs=1e-9)
    w = stats.wasserstein_distance(r, c)
    assert f.wasserstein * max(np.std(r), 0.001) == pytest.approx(w, rel=1e-7, abs=1e-9)


def test_binned_statistics_agree_with_scipy() -> None:
    rng = np.random.default_rng(3)
    ref = pd.DataFrame({"x": rng.normal(size=4000), "c": rng.choice(list("pqrs"), 4000)})
    cur = pd.DataFrame({"x": rng.normal(0.5, 1, 3000),
                        "c": rng.choice(list("pqrst"), 3000, p=[0.3, 0.3, 0.2, 0.1, 0.1])})
    profile = ReferenceProfile.fit(ref, n_bins=12)
    report = DataDrift(epsilon=1e-4).run(profile, cur)
    col = profile.columns["x"]
    rc = col.counts
    cc = np.bincount(np.searchsorted(col.edges, cur["x"].to_numpy(), side="right"),
                     minlength=rc.size)
    r, c = rc / rc.sum(), cc / cc.sum()
    fx = report.feature("x")
    assert fx.psi == pytest.approx(np.sum((r - c) * np.log(r / c)), rel=1e-12)
    assert fx.kl == pytest.approx(stats.entropy(r, c), rel=1e-12)
    assert fx.js == pytest.approx(jensenshannon(r, c), rel=1e-12)
    chi2, p, dof, _ = stats.chi2_contingency(np.vstack([rc, cc]), correction=False)
    assert fx.chi2 == pytest.approx(chi2, rel=1e-12) and fx.chi2_p == pytest.approx(p, rel=1e-9)
    fc = report.feature("c")
    assert fc.unseen == ["t"] and fc.bins == 5  # p q r s + one bucket for unseen values
    table = np.vstack([np.append(profile.columns["c"].counts, 0),  # type: ignore[union-attr]
                       [*(cur["c"].value_counts()[k] for k in profile.columns["c"].categories),  # type: ignore[union-attr]
                        (cur["c"] == "t").sum()]])
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)
    assert fc.chi2 == pytest.approx(chi2, rel=1e-12)
    assert report.feature("x").drifted and report.feature("c").drifted


def test_log_base_two_gives_bits(golden_numeric: tuple[np.ndarray, np.ndarray]) -> None:
    ref, cur = golden_numeric
    nats = _score({"v": ref}, {"v": cur}).feature("v")
    bits = _score({"v": ref}, {"v": cur}, log_base=2).feature("v")
    assert bits.kl == pytest.approx(nats.kl / math.log(2), rel=1e-12)
    assert bits.js == pytest.approx(nats.js / math.sqrt(math.log(2)), rel=1e-12)
    assert bits.psi == pytest.approx(nats.psi, rel=1e-12)  # PSI stays in nats


def test_clean_window_does_not_drift_and_shifted_columns_do() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(20000, 8))
    cur = rng.normal(size=(20000, 8))
    cur[:, :3] += 0.5
    profile = ReferenceProfile.fit(ref)
    for stat in ("psi", "js", "wasserstein", "kl"):
        report = DataDrift(stat=stat).run(profile, cur)
        assert report.drifted == ["x0", "x1", "x2"], stat
        assert not report.dataset_drift
    report = DataDrift().run(profile, rng.normal(size=(20000, 8)) + 0.5)
    assert report.dataset_drift and report.share_drifted == 1.0
    result = report.to_result()
    assert result.findings[0].threat_id == "evasion" and result.metrics["dataset_drift"]


def test_sketched_reference_stays_close_to_exact() -> None:
    rng = np.random.default_rng(5)
    ref, cur = rng.lognormal(size=100_000), rng.lognormal(0.1, 1, 50_000)
    exact = _score({"v": ref}, {"v": cur}, sample_size=None).feature("v")
    sketch = _score({"v": ref}, {"v": cur}, sample_size=2000).feature("v")
    assert abs(sketch.ks - exact.ks) <= 1 / 2000 + 1e-12
    assert sketch.wasserstein == pytest.approx(exact.wasserstein, rel=0.02)
    assert sketch.psi == exact.psi  # binned statistics use the full reference's counts


def test_missing_values_are_counted_not_binned() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=1000)
    cur = rng.normal(size=1000)
    cur[:100] = np.nan
    cur[100:110] = np.inf
    f = _score({"v": ref}, pd.DataFrame({"v": cur})).feature("v")
    assert f.count_cur == 890 and f.missing_cur == pytest.approx(0.11)
    assert f.ks == pytest.approx(stats.ks_2samp(ref, cur[110:]).statistic, abs=1e-12)


def test_profile_json_round_trip_scores_identically() -> None:
    rng = np.random.default_rng(2)
    ref = pd.DataFrame({"a": rng.normal(size=3000), "b": rng.exponential(size=3000),
                        "c": rng.choice(["x", "y"], 3000)})
    cur = pd.DataFrame({"a": rng.normal(0.2, 1, 2000), "b": rng.exponential(1.3, 2000),
                        "c": rng.choice(["x", "y", "z"], 2000)})
    profile = ReferenceProfile.fit(ref, sample_size=500, source={"dataset": "t@1"})
    text = profile.to_json()
    json.loads(text)  # valid JSON
    again = ReferenceProfile.from_json(text)
    for binning in ("quantile", "evidently"):
        a = DataDrift(binning=binning).run(profile, cur).as_dict()
        b = DataDrift(binning=binning).run(again, cur).as_dict()
        assert a == b
    assert again.source == {"dataset": "t@1"} and again.categorical == ["c"]


def test_bad_input_is_reported_clearly() -> None:
    profile = ReferenceProfile.fit(pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "x"]}))
    with pytest.raises(InputError, match="lacks column"):
        DataDrift().run(profile, pd.DataFrame({"a": [1.0]}))
    with pytest.raises(InputError, match="numeric in the reference"):
        DataDrift().run(profile, pd.DataFrame({"a": ["p", "q"], "b": ["x", "y"]}))
    with pytest.raises(InputError, match="unknown binning"):
        DataDrift(binning="doane")
    with pytest.raises(InputError, match="no finite values"):
        ReferenceProfile.fit(pd.DataFrame({"a": [np.nan, np.nan]}))
    with pytest.raises(InputError, match="format"):
        ReferenceProfile.from_dict({"format": 99})


def test_prediction_drift_on_a_real_model() -> None:
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.5, random_state=0, stratify=y)
    model = LogisticRegression(max_iter=2000, C=0.1).fit(Xtr, ytr)
    ref_p, new_p = model.predict_proba(Xte[:450]), model.predict_proba(Xte[450:])
    profile = prediction_profile(ref_p)
    assert profile.categorical == ["predicted_class"] and profile.numeric == ["confidence"]
    calm = prediction_drift(profile, new_p)
    assert not calm.drifted
    # traffic that is mostly 0s and 1s, and blurred: class shares and confidence both move
    mask = np.isin(yte[450:], [0, 1])
    skewed = model.predict_proba(np.clip(Xte[450:][mask] * 0.6, 0, 1))
    report = prediction_drift(ref_p, skewed)
    assert set(report.drifted) == {"predicted_class", "confidence"}

    perf = PerformanceDrift(alpha=0.01).fit(yte[:450], ref_p)
    same = perf.run(yte[450:], new_p)
    assert not same.drifted and abs(same.drop) < 0.05
    noisy = np.clip(Xte[450:] + np.random.default_rng(0).normal(0, 0.35, Xte[450:].shape), 0, 1)
    worse = perf.run(yte[450:], model.predict_proba(noisy))
    assert worse.drifted and worse.drop > 0.05
    table = [[worse.n_cur - round(worse.accuracy_cur * worse.n_cur),
              round(worse.accuracy_cur * worse.n_cur)],
             [perf.n_ref_ - perf.correct_ref_, perf.correct_ref_]]
    assert worse.p_value == pytest.approx(stats.fisher_exact(table, alternative="greater").pvalue)
    assert PerformanceDrift.from_dict(perf.to_dict()).run(yte[450:], new_p) == same


def test_demo_drift_step_reports_clean_and_degraded_traffic() -> None:
    from riskloop import load_settings
    from riskloop.demo import digits
    from riskloop.demo.scenario import STEPS, DemoContext
    from riskloop.demo.steps_drift import step_drift

    assert step_drift in STEPS
    X_tr, X_te, _, _ = digits.digits_split(random_state=0)
    ctx = DemoContext(settings=load_settings(workspace="."), refs={"train": "digits-train@1"},
                      data={"X_train": X_tr, "X_test": X_te})
    [(title, data)] = list(step_drift(ctx))
    assert title == "drift" and data["features"] == 64
    assert data["clean_drifted"] == 0 and not data["clean_dataset_drift"]
    assert data["degraded_dataset_drift"] and data["degraded_drifted"] > 32


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    n=st.integers(30, 400),
    shift=st.floats(-2, 2),
    binning=st.sampled_from(["quantile", "evidently"]),
)
def test_property_statistics_ranges_and_identity(seed: int, n: int, shift: float,
                                                 binning: str) -> None:
    rng = np.random.default_rng(seed)
    ref = pd.DataFrame({"x": rng.normal(size=n), "k": rng.integers(0, 4, n),
                        "c": rng.choice(list("abc"), n)})
    cur = pd.DataFrame({"x": rng.normal(shift, 1, n), "k": rng.integers(0, 5, n),
                        "c": rng.choice(list("abcd"), n)})
    profile = ReferenceProfile.fit(ref, sample_size=None)
    for f in DataDrift(binning=binning).run(profile, cur).features:
        assert f.psi >= 0 and f.kl >= -1e-12 and f.chi2 >= 0
        assert 0 <= f.js <= math.sqrt(math.log(2)) + 1e-12
        assert 0 <= f.chi2_p <= 1
        if f.kind == "numeric":
            assert 0 <= f.ks <= 1 and 0 <= f.ks_p <= 1 and f.wasserstein >= 0
    same = DataDrift(binning=binning).run(profile, ref)
    for f in same.features:
        assert f.psi == pytest.approx(0, abs=1e-12) and f.js == pytest.approx(0, abs=1e-7)
        assert not f.drifted and f.chi2_p == pytest.approx(1.0)
        if f.kind == "numeric":
            assert f.ks == 0 and f.wasserstein == pytest.approx(0, abs=1e-12)


def test_nullable_integers_and_float_coded_categories() -> None:
    ref = pd.DataFrame({"a": pd.array([1, 2, None, 4] * 50, dtype="Int64"),
                        "y": [1, 2, 3, 4] * 50})
    cur = pd.DataFrame({"a": pd.array([1, 2, None, 9] * 50, dtype="Int64"),
                        "y": [1.0, 2.0, np.nan, 4.0] * 50})  # a CSV column with gaps is float
    profile = ReferenceProfile.fit(ref, categorical=["y"])
    report = DataDrift().run(profile, cur)
    a, y = report.feature("a"), report.feature("y")
    assert a.missing_ref == 0.25 and a.count_cur == 150 and a.ks == pytest.approx(1 / 3)
    assert y.unseen == [] and y.missing_cur == 0.25  # 1.0 is category "1", not a new one
