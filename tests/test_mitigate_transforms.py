"""Unit and property tests of the mitigation transforms: squeezers (cross-checked against ART
and scipy), the detector's calibration and storage, distillation's soft labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from riskloop import InputError
from riskloop.mitigate import BitDepth, FeatureSqueezingDetector, MedianSmoothing, create
from riskloop.mitigate.distillation import soft_labels, tempered_loss
from riskloop.mitigate.feature_squeezing import DEFENCE_FORMAT, calibrate_threshold

images = arrays(np.float32, st.tuples(st.integers(1, 3), st.integers(1, 2), st.integers(1, 9),
                                      st.integers(1, 9)),
                elements=st.floats(0, 1, width=32))

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py



@pytest.mark.parametrize("bits", [1, 2, 3, 4, 5, 8])
def test_bit_depth_equals_art_feature_squeezing(bits):
    from art.defences.preprocessor import FeatureSqueezing as ArtSqueezing

    x = np.random.default_rng(bits).random((20, 1, 8, 8), dtype=np.float32)
    ours = BitDepth(bits=bits)(x)
    art, _ = ArtSqueezing(clip_values=(0.0, 1.0), bit_depth=bits)(x)
    np.testing.assert_allclose(ours, art, atol=1e-6)


def test_bit_depth_respects_a_non_unit_range():
    from art.defences.preprocessor import FeatureSqueezing as ArtSqueezing

    x = np.random.default_rng(0).uniform(-2, 3, (10, 5)).astype(np.float32)
    ours = BitDepth(bits=3)(x, lower=-2.0, upper=3.0)
    art, _ = ArtSqueezing(clip_values=(-2.0, 3.0), bit_depth=3)(x)
    np.testing.assert_allclose(ours, art, atol=1e-5)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5])
def test_median_equals_scipy_and_art_spatial_smoothing(size):
    from art.defences.preprocessor import SpatialSmoothing
    from scipy.ndimage import median_filter

    x = np.random.default_rng(size).random((6, 3, 8, 9), dtype=np.float32)
    ours = MedianSmoothing(size=size)(x)
    np.testing.assert_array_equal(ours, median_filter(x, size=(1, 1, size, size), mode="reflect"))
    art, _ = SpatialSmoothing(window_size=size, channels_first=True)(x)
    np.testing.assert_array_equal(ours, art)


@settings(max_examples=40, deadline=None)
@given(x=images, bits=st.integers(1, 8), size=st.integers(1, 4))
def test_squeezed_inputs_stay_in_range_and_bit_depth_is_idempotent(x, bits, size):
    b = BitDepth(bits=bits)(x)
    assert b.min() >= 0 and b.max() <= 1
    np.testing.assert_allclose(BitDepth(bits=bits)(b), b, atol=1e-6)
    assert len(np.unique(b)) <= 2**bits
    m = MedianSmoothing(size=size)(x)
    assert m.shape == x.shape and m.min() >= x.min() and m.max() <= x.max()


@settings(max_examples=60, deadline=None)
@given(scores=arrays(np.float64, st.integers(1, 300), elements=st.floats(0, 2)),
       fpr=st.floats(0.001, 0.5))
def test_calibrated_threshold_never_exceeds_the_target_fpr(scores, fpr):
    t = calibrate_threshold(scores, fpr)
    assert (scores > t).mean() <= fpr + 1e-12
    # and it is the smallest such threshold among the scores: one step lower flags too many
    lower = scores[scores < t]
    if len(lower):
        assert (scores > lower.max()).sum() > int(np.floor(fpr * len(scores) + 1e-9))


def _linear_proba(w: np.ndarray):
    def proba(X: np.ndarray) -> np.ndarray:
        z = X.reshape(len(X), -1) @ w
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    return proba


def test_detector_scores_the_largest_l1_gap_and_round_trips_through_json(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 3)) * 4
    proba = _linear_proba(w)
    X = rng.random((50, 1, 4, 4), dtype=np.float32)
    det = FeatureSqueezingDetector(squeezers=[BitDepth(bits=2), MedianSmoothing(size=2)],
                                   target_fpr=0.1, target=proba).calibrate(X)
    expected = np.maximum(np.abs(proba(X) - proba(BitDepth(bits=2)(X))).sum(1),
                          np.abs(proba(X) - proba(MedianSmoothing(size=2)(X))).sum(1))
    np.testing.assert_allclose(det.score(X), expected)
    assert det.flag(X).mean() <= 0.1
    path = tmp_path / "defence.json"
    det.to_json(path)
    data = json.loads(path.read_text())
    assert data["format"] == DEFENCE_FORMAT and data["threshold"] == det.threshold
    assert data["squeezers"] == [{"type": "bit_depth", "bits": 2}, {"type": "median", "size": 2}]
    for source in (path, tmp_path, path.read_text(), data):
        back = FeatureSqueezingDetector.from_json(source, target=proba)
        np.testing.assert_array_equal(back.score(X), det.score(X))
        assert back.threshold == det.threshold and back.target_fpr == 0.1


def test_detector_errors_are_one_clear_line(tmp_path):
    with pytest.raises(InputError, match="format must be"):
        FeatureSqueezingDetector.from_json({"format": "other/1"})
    with pytest.raises(InputError, match="no defence file"):
        FeatureSqueezingDetector.from_json(tmp_path / "missing.json")
    with pytest.raises(InputError, match="not bound"):
        FeatureSqueezingDetector().score(np.zeros((1, 1, 4, 4), np.float32))
    with pytest.raises(InputError, match="not calibrated"):
        FeatureSqueezingDetector(target=_linear_proba(np.ones((16, 2)))).flag(
            np.zeros((1, 1, 4, 4), np.float32))
    with pytest.raises(InputError, match="image inputs"):
        MedianSmoothing(size=2)(np.zeros((3, 5), np.float32))
    with pytest.raises(InputError, match="bit depth"):
        BitDepth(bits=0)
    with pytest.raises(InputError, match="target FPR"):
        FeatureSqueezingDetector(target_fpr=1.5)


@settings(max_examples=30, deadline=None)
@given(z=arrays(np.float64, st.tuples(st.integers(1, 8), st.integers(2, 6)),
                elements=st.floats(-50, 50)),
       t=st.floats(0.5, 200))
def test_soft_labels_are_distributions_that_flatten_with_temperature(z, t):
    p = soft_labels(z, t)
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    hotter = soft_labels(z, t * 10)
    # a higher temperature never sharpens: the largest probability does not grow
    assert np.all(hotter.max(1) <= p.max(1) + 1e-5)


def test_tempered_loss_is_cross_entropy_at_t1_and_accepts_soft_labels():
    torch.manual_seed(0)
    module = torch.nn.Linear(4, 3)
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    ce = torch.nn.functional.cross_entropy(module(x), y)
    assert torch.allclose(tempered_loss(1.0)(module, x, y), ce)
    onehot = torch.nn.functional.one_hot(y, 3).float()
    assert torch.allclose(tempered_loss(1.0)(module, x, onehot), ce, atol=1e-6)
    assert torch.allclose(tempered_loss(5.0)(module, x, y),
                          torch.nn.functional.cross_entropy(module(x) / 5.0, y))


def test_registry_refuses_unknown_methods_and_options():
    assert create("trades").method == "trades"
    assert create("dp", epsilon=2.0).epsilon == 2.0
    with pytest.raises(InputError, match="unknown mitigation 'nope'"):
        create("nope")
    with pytest.raises(InputError, match="mitigation 'distillation'"):
        create("distillation", epsilon=1.0)


@pytest.mark.parametrize("name", sorted(__import__("riskloop.mitigate", fromlist=["MITIGATIONS"]).MITIGATIONS))
def test_every_mitigation_honours_the_component_contract(name):
    import inspect

    from riskloop import THREATS
    from riskloop.assess.suites import SUITES
    from riskloop.mitigate import MITIGATIONS

    cls = MITIGATIONS[name]
    assert cls.name == name and cls.summary and cls.access == "white-box"
    assert cls.threats and all(t in THREATS for t in cls.threats)
    assert cls.reassess and all(s in SUITES for s in cls.reassess)
    params = list(inspect.signature(cls.__init__).parameters.values())[1:]
    assert params and all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params)
    assert "random_state" in {p.name for p in params}
    doc = (inspect.getmodule(cls).__doc__ or "") + (cls.__doc__ or "")
    assert any(str(year) in doc for year in range(2015, 2024)), "cite the paper in the docstring"
    json.dumps(cls().get_params())  # configuration is plain data
