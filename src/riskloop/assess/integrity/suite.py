"""The integrity suite: is the dataset poisoned, and did the model learn a backdoor from it?

``--data`` is the dataset under inspection (normally the model's training data); every
flagged row is reported by its 0-based position in it. ``-o trusted=DATASET@VER`` names clean
held-out data: the backdoor detectors' reclassification model trains on it, and STRIP takes
its overlays and its threshold from it (without trusted data STRIP is skipped, since a
threshold taken from possibly poisoned data is not a threshold). ``-o truth=ARRAY`` names a
0/1 array of a NumPy dataset marking rows known to be poisoned (a red-team exercise): the
run then also reports each detector's recall and precision, and ``strip_auc``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ...errors import InputError
from ...findings import AssessmentResult
from ...targets.base import ACCESS_LABEL, check_data
from ..privacy._data import dataset_arrays, option, read_columns, reject_unknown, tri_state
from .backdoor import (
    ActivationClustering,
    SpectralSignatures,
    penultimate_activations,
    reclassify,
)
from .label_issues import LabelIssueDetector
from .strip import STRIP

log = logging.getLogger(__name__)

OPTIONS = ["trusted", "truth", "label_issues", "backdoor", "strip", "expected_poison", "cv",
           "strip_overlays"]
MSG_BACKDOOR_WHITE_BOX = (
    "backdoor detection reads penultimate-layer activations, but the target is {access}: "
    "assess the registered torch model itself, or pass -o backdoor=false"
)


def _truth(request: Any, key: str, n: int) -> np.ndarray:
    ds = request.dataset
    frame = read_columns(ds, [key])
    t = frame[key].to_numpy()
    if len(t) != n:
        raise InputError(f"truth array '{key}' has {len(t)} rows for {n} data rows (was --limit used?)")
    if not np.isin(t, [0, 1, True, False]).all():
        raise InputError(f"truth array '{key}' must hold 0/1 (1 = known poisoned row)")
    return t.astype(bool)


def _rates(flagged: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    hit = int(np.sum(flagged & truth))
    return {"recall": hit / max(int(truth.sum()), 1), "precision": hit / max(int(flagged.sum()), 1),
            "flagged": int(flagged.sum())}


def run_integrity_suite(request: Any) -> AssessmentResult:
    """Suite runner for :mod:`riskloop.assess.suites` (``--suite integrity``)."""
    opts = dict(request.options)
    trusted_ref = option(opts, "trusted", None, str, suite="integrity")
    truth_key = option(opts, "truth", None, str, suite="integrity")
    do_labels = option(opts, "label_issues", True, bool, suite="integrity")
    do_backdoor = tri_state(opts, "backdoor", suite="integrity")
    do_strip = tri_state(opts, "strip", suite="integrity")
    expected = option(opts, "expected_poison", 0.05, float, suite="integrity")
    cv = option(opts, "cv", 5, int, suite="integrity")
    overlays = option(opts, "strip_overlays", 20, int, suite="integrity")
    reject_unknown(opts, suite="integrity", known=OPTIONS)
    target, seed = request.target, request.random_state
    X, y = check_data(target, request.X, request.y, where="--data")
    if request.dataset is not None and request.dataset.rows and len(X) != request.dataset.rows:
        raise InputError("integrity lists row ids of the whole dataset: run it without --limit")
    truth = _truth(request, truth_key, len(X)) if truth_key else None
    Xt = yt = None
    if trusted_ref:
        ds, Xt_raw, yt_raw = dataset_arrays(request.settings, trusted_ref)
        if request.dataset is not None and ds.digest == request.dataset.digest:
            raise InputError(f"-o trusted='{ds.ref}' is the dataset under inspection: trusted data must be separate, clean held-out data")
        Xt, yt = check_data(target, Xt_raw, yt_raw, where="trusted data")
    has_activations = getattr(target, "module", None) is not None
    if do_backdoor and not has_activations:
        raise InputError(MSG_BACKDOOR_WHITE_BOX.format(access=target.access))
    if do_strip and Xt is None:
        raise InputError("STRIP needs clean held-out inputs for its overlays and threshold: pass -o trusted=DATASET@VER")
    if do_strip and target.access == ACCESS_LABEL:
        raise InputError("STRIP needs class probabilities but the target answers labels only")

    metrics: dict[str, Any] = {}
    findings = []
    warnings: list[str] = []
    params: dict[str, Any] = {"trusted": trusted_ref, "truth": truth_key}
    masks: dict[str, np.ndarray] = {}
    steps = ["label issues"] * do_labels + ["backdoor"] * (do_backdoor is not False and has_activations) \
        + ["strip"] * (do_strip is not False and Xt is not None)

    def progress(label: str) -> None:
        if request.progress is not None:
            request.progress(label, steps.index(label) if label in steps else len(steps), len(steps))

    if do_labels:
        progress("label issues")
        det = LabelIssueDetector(cv=cv, random_state=seed)
        res = det.run(X, y)
        metrics.update(res.metrics)
        findings += res.findings
        params.update(res.params)
        masks["label_issues"] = np.isin(np.arange(len(y)), det.flagged_)
    if do_backdoor is not False and has_activations:
        progress("backdoor")
        union = np.zeros(len(y), dtype=bool)
        acts = penultimate_activations(target, X)
        predicted = None
        if Xt is not None:  # one reclassifier trained on trusted data serves both detectors
            predicted, _ = reclassify(target, X, y, np.zeros(len(y), dtype=bool), X_trusted=Xt,
                                      y_trusted=yt, random_state=seed)
        for det_b in (ActivationClustering(random_state=seed),
                      SpectralSignatures(expected_poison=expected, random_state=seed)):
            m = det_b.detect(target, X, y, activations=acts, X_trusted=Xt, y_trusted=yt,
                             predicted=predicted)
            det_b.flagged_ = np.flatnonzero(m)
            res = det_b.result(len(y))
            metrics.update(res.metrics)
            findings += res.findings
            params[det_b.name] = {**det_b.get_params(),
                                  "reclassified_by": "trusted" if predicted is not None else det_b.reclassified_by_}
            masks[det_b.name] = m
            union |= m
        masks["backdoor"] = union
        metrics["backdoor_flagged_fraction"] = float(union.mean())
        metrics["backdoor_flagged_rows"] = [int(i) for i in np.flatnonzero(union)]
    elif do_backdoor is None:
        warnings.append(f"backdoor detection skipped: it needs the model's activations, the target is {target.access}")
    if do_strip is not False and Xt is not None and target.access != ACCESS_LABEL:
        progress("strip")
        strip = STRIP(n_overlays=overlays, random_state=seed)
        res = strip.run(target, X, X_clean=Xt, triggered=truth)
        metrics.update(res.metrics)
        findings += res.findings
        params.update(res.params)
        masks["strip"] = np.isin(np.arange(len(y)), strip.flagged_)
    elif do_strip is None:
        warnings.append("STRIP skipped: pass -o trusted=DATASET@VER (clean held-out data) for its overlays and threshold")
    if truth is not None:
        metrics["detection"] = {name: _rates(m, truth) for name, m in masks.items()}
        metrics["known_poisoned_rows"] = int(truth.sum())
    progress("done")
    # The numbers a gate reads first (``riskloop results`` shows the first few).
    head = [k for k in ("label_issue_fraction", "backdoor_flagged_fraction", "strip_auc") if k in metrics]
    metrics = {**{k: metrics[k] for k in head}, **{k: v for k, v in metrics.items() if k not in head}}
    return AssessmentResult(suite="integrity", metrics=metrics, findings=findings,
                            warnings=warnings, params=params)
