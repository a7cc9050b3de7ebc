"""The privacy suite: membership inference (loss threshold + reference models) and, for
white-box targets, MI-Face model inversion, recorded as one run.

Members are the records the model was trained on (its lineage, or ``-o members=DATASET@VER``);
non-members are ``--data``, which the model must never have seen. When reference models are
trained, half of the non-members become their population data and only the other half are
scored, so no scored candidate was seen by any reference model either.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from ...errors import InputError
from ...findings import AssessmentResult
from ...targets.base import check_data, is_white_box
from ._data import dataset_arrays, option, reject_unknown, seeded_split, training_sets, tri_state
from .inversion import MSG_NEEDS_WHITE_BOX, MIFace
from .membership import LossThresholdMIA, ReferenceModelMIA, combine

log = logging.getLogger(__name__)

OPTIONS = ["members", "reference_models", "reference_epochs", "max_candidates", "inversion",
           "inversion_steps"]
MSG_NO_MEMBERS = (
    "membership inference needs the model's training data (members), and model '{ref}' has no "
    "recorded training data: register it with --trained-on DATASET@VER, or pass "
    "-o members=DATASET@VER"
)
MSG_DATA_IS_MEMBERS = (
    "--data '{ref}' is the model's training data, but membership inference needs held-out data "
    "the model never saw (non-members): pass another dataset with --data"
)


def _members(request: Any, ref: str | None) -> tuple[str, np.ndarray, np.ndarray]:
    if ref:
        ds, X, y = dataset_arrays(request.settings, ref)
        sets = [(ds, X, y)]
    else:
        sets = training_sets(request.settings, request.model)
        if not sets:
            raise InputError(MSG_NO_MEMBERS.format(ref=request.model.ref))
    data = request.dataset
    for ds, _X, _y in sets:
        if data is not None and (ds.digest == data.digest or ds.id == data.id):
            raise InputError(MSG_DATA_IS_MEMBERS.format(ref=data.ref))
    X = np.concatenate([s[1] for s in sets])
    y = np.concatenate([s[2] for s in sets])
    return ", ".join(s[0].ref for s in sets), X, y


def _step(request: Any, label: str, done: int, total: int) -> None:
    if request.progress is not None:
        request.progress(label, done, total)


def run_privacy_suite(request: Any) -> AssessmentResult:
    """Suite runner for :mod:`riskloop.assess.suites` (``--suite privacy``)."""
    opts = dict(request.options)
    members_ref = option(opts, "members", None, str, suite="privacy")
    n_ref = option(opts, "reference_models", 4, int, suite="privacy")
    ref_epochs = option(opts, "reference_epochs", 30, int, suite="privacy")
    max_cand = option(opts, "max_candidates", 1000, int, suite="privacy")
    inversion = tri_state(opts, "inversion", suite="privacy")
    inv_steps = option(opts, "inversion_steps", 300, int, suite="privacy")
    reject_unknown(opts, suite="privacy", known=OPTIONS)
    if n_ref < 0 or max_cand < 1:
        raise InputError("bad privacy option: reference_models must be >= 0 and max_candidates >= 1")
    target, seed = request.target, request.random_state
    white = is_white_box(target)
    if inversion and not white:
        raise InputError(MSG_NEEDS_WHITE_BOX.format(access=target.access))

    members_from, Xm, ym = _members(request, members_ref)
    Xm, ym = check_data(target, Xm, ym, where="member data")
    Xn, yn = check_data(target, request.X, request.y, where="non-member data (--data)")
    if n_ref > 0:
        pop_idx, cand_idx = seeded_split(len(Xn), 0.5, seed)
    else:
        pop_idx, cand_idx = np.array([], dtype=int), np.arange(len(Xn))
    rng = np.random.default_rng(seed + 1)
    n = min(len(cand_idx), len(Xm), max_cand)
    take_n = rng.choice(cand_idx, size=n, replace=False)
    take_m = rng.choice(len(Xm), size=n, replace=False)
    X = np.concatenate([Xm[take_m], Xn[take_n]])
    y = np.concatenate([ym[take_m], yn[take_n]])
    member = np.r_[np.ones(n, dtype=bool), np.zeros(n, dtype=bool)]
    total = 1 + (1 if n_ref else 0) + (1 if (white and inversion is not False) else 0)

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    _step(request, "loss threshold", 0, total)
    loss = LossThresholdMIA()
    loss_result = loss.run(target, X, y, member=member)
    attacks = {"loss-threshold": loss.metrics_}
    findings = list(loss_result.findings)
    timings["loss-threshold"] = time.perf_counter() - t0
    params: dict[str, Any] = {"members_from": members_from, "candidates_per_side": n,
                              "population_rows": len(pop_idx), "reference_models": n_ref}
    if n_ref:
        _step(request, f"{n_ref} reference models", 1, total)
        t0 = time.perf_counter()
        ref = ReferenceModelMIA(n_reference=n_ref, epochs=ref_epochs, random_state=seed)
        ref_result = ref.run(target, X, y, member=member, X_population=Xn[pop_idx],
                             y_population=yn[pop_idx])
        attacks.update(ref.attack_metrics_)
        findings += ref_result.findings
        params["reference"] = ref.get_params()
        timings["reference-model"] = time.perf_counter() - t0
    metrics = combine(attacks)
    artifacts: dict[str, Any] = {}
    warnings: list[str] = []
    if metrics.get("tpr_at_0.1pct_fpr") is None:
        warnings.append(
            f"{n} non-members cannot measure 0.1% FPR: the lowest reachable FPR is "
            f"{metrics['lowest_reachable_fpr']:.4f} (TPR there {metrics['tpr_at_lowest_reachable_fpr']:.3f})"
        )
    if white and inversion is not False:
        _step(request, "model inversion", total - 1, total)
        t0 = time.perf_counter()
        inv = MIFace(steps=inv_steps, random_state=seed)
        inv_result = inv.run(target, Xm, ym)
        metrics.update({k: v for k, v in inv.metrics_.items()})
        findings += inv_result.findings
        params["inversion"] = inv.get_params()
        model = request.model
        stem = f"{model.name}-v{model.version}-{time.strftime('%Y%m%dT%H%M%S')}-{np.random.default_rng().integers(1 << 30):08x}"
        artifacts.update(inv.save_evidence(request.settings.artifacts_dir / "privacy", stem))
        timings["mi-face"] = time.perf_counter() - t0
    elif not white:
        warnings.append(f"model inversion skipped: it needs a white-box target, this one is {target.access}")
    metrics["seconds"] = {k: round(v, 2) for k, v in timings.items()}
    _step(request, "done", total, total)
    return AssessmentResult(suite="privacy", metrics=metrics, findings=findings,
                            artifacts=artifacts, warnings=warnings, params=params)
