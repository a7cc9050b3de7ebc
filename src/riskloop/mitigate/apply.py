"""Applying a mitigation to a registered model: new version, lineage, before / after evidence.

:func:`apply_mitigation` is what ``riskloop mitigate`` runs, in three phases:

1. *read* (one short transaction): resolve ``MODEL@VER`` and the datasets, load the model
   through the safe loader (digest checked) and the data (digest checked);
2. *compute* (no transaction held, so other commands are not blocked while training): run
   the mitigation, measure clean accuracy before and after on held-out data, re-run the
   assessment suites the method targets on the new model (and on the parent when it has no
   usable run of that suite yet);
3. *write* (one transaction): store the files under ``.riskloop/artifacts/``, register the
   cleaned dataset (sanitization) and the new model version ``derived_from`` the parent with
   the method, parameters and dataset in its derivation, record the assessment runs and one
   ``mitigation.apply`` audit event. If anything fails, nothing is registered and the files
   written for it are removed.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..errors import InputError
from ..findings import AssessmentResult
from ..store.db import transaction
from ..store.models import AssessmentRun, DatasetVersion, ModelVersion
from .base import MitigationResult, Progress, accuracy
from .feature_squeezing import DEFENCE_FILE, FeatureSqueezing, attack_and_evaluate, module_proba
from .reassess import ModelStub, SuiteCall, standard_eps, try_suite
from .record import Comparison, MitigationReport, ParentInfo, write_npz, write_version
from .registry import create

log = logging.getLogger(__name__)


def apply_mitigation(
    settings: Settings,
    *,
    model: str,
    method: str,
    data: str,
    test: str | None = None,
    params: dict[str, Any] | None = None,
    suite_options: dict[str, dict[str, Any]] | None = None,
    limit: int | None = None,
    random_state: int = 0,
    progress: Progress | None = None,
    reassess: bool = True,
) -> MitigationReport:
    """Mitigate ``model`` with ``method`` on dataset ``data``; store and compare the result.

    ``test`` is held-out data for the before / after comparison (default: the dataset of
    the parent's latest assessment that is not training data). ``suite_options`` pass
    options to the re-run suites, e.g. ``{"privacy": {"reference_models": 0}}``; ``limit``
    compares on a seeded sample of that many test rows (the same sample ``riskloop assess
    --limit`` draws with the same seed, so a stored run of the parent can be reused).
    """
    mitigation = create(method, **{**(params or {}), "random_state": random_state})
    state = _read(settings, model=model, data=data, test=test,
                  suites=mitigation.reassess if reassess else (), limit=limit,
                  random_state=random_state)
    parent, spec, target = state["parent"], state["spec"], state["target"]
    X, y, Xte, yte = state["X"], state["y"], state["X_test"], state["y_test"]
    ds, test_ds = state["dataset"], state["test_dataset"]
    module = target.module
    warnings: list[str] = []

    result = mitigation.run(module, spec, X, y, progress=progress)
    child_target = _target(result)
    rows = [Comparison("clean_accuracy", f"clean accuracy ({test_ds.ref})",
                       accuracy(module, Xte, yte), accuracy(result.module, Xte, yte), "higher")]
    eps = standard_eps(target)
    if isinstance(mitigation, FeatureSqueezing):
        _tick(progress, "attack", 0, 1)
        detector = mitigation.detector_
        ev = attack_and_evaluate(detector, target, Xte, yte, eps=eps, random_state=random_state)
        result.files[DEFENCE_FILE] = detector.to_json()
        result.metrics.update({"fpr": ev["fpr"], "detection_rate": ev["detection_rate"],
                               "attacks": ev["attacks"]})
        _tick(progress, "attack", 1, 1)
        for name, a in ev["attacks"].items():
            rows.append(Comparison(f"detection_rate_{name}",
                                   f"detector: {name} eps {eps:.4g} caught", None,
                                   a["detection_rate"], "higher"))
        rows.append(Comparison("defence_fpr",
                               f"detector: clean flagged (target {mitigation.target_fpr:g})",
                               None, ev["fpr"], "lower"))

    child = ModelStub(name=parent.name, version=state["next_version"])
    opts = suite_options or {}
    after: dict[str, AssessmentResult] = {}
    before_new: dict[str, AssessmentResult] = {}
    before: dict[str, dict[str, Any]] = dict(state["stored"])
    same_weights = result.module is module  # a defence around the parent's own weights
    for suite in mitigation.reassess if reassess else ():
        _tick(progress, f"assess {suite}", 0, 2)
        calls = _suite_calls(settings, suite, parent=parent, child=child, target=target,
                             child_target=child_target, result=result, X=X, y=y, Xte=Xte,
                             yte=yte, ds=ds, test_ds=test_ds, options=opts.get(suite, {}),
                             random_state=random_state, limit=limit)
        prev_result = state["stored_results"].get(suite)
        if suite not in before:
            prev_result = try_suite(suite, calls[0], warnings)
            if prev_result is not None:
                before_new[suite] = prev_result
                before[suite] = prev_result.metrics
        _tick(progress, f"assess {suite}", 1, 2)
        if same_weights and prev_result is not None:
            # identical weights answer every query identically: the parent's run is the
            # child's run, recorded again against the child's digest
            res: AssessmentResult | None = copy.deepcopy(prev_result)
            res.params["weights_identical_to"] = parent.ref  # type: ignore[union-attr]
        else:
            res = try_suite(suite, calls[1], warnings)
        if res is not None:
            after[suite] = res
        _tick(progress, f"assess {suite}", 2, 2)
    rows += _suite_rows(before, {k: v.metrics for k, v in after.items()})
    if mitigation.name == "dp":
        rows.append(Comparison("epsilon", f"privacy epsilon at delta {result.metrics['delta']:g}",
                               None, result.metrics["epsilon"], "lower"))
    if result.dataset is not None:
        rows.append(Comparison("training_rows", "training rows", len(X), len(result.dataset.X),
                               None))
    rows.append(Comparison("train_seconds", "mitigation time (s)", None,
                           round(result.train_seconds, 2), None))
    result.warnings.extend(warnings)
    try:
        return write_version(settings, parent=parent, result=result, ds=ds, test_ds=test_ds,
                      rows=rows, after=after, before_new=before_new,
                      reused=state["stored_ids"])
    except BaseException:
        _remove_suite_artifacts(settings, [*after.values(), *before_new.values()])
        raise


def _tick(progress: Progress | None, phase: str, done: int, total: int) -> None:
    if progress is not None:
        progress(phase, done, total)


def _suite_calls(
    settings: Settings, suite: str, *, parent: ParentInfo, child: ModelStub, target: Any,
    child_target: Any, result: MitigationResult, X: np.ndarray, y: np.ndarray,
    Xte: np.ndarray, yte: np.ndarray, ds: DatasetVersion, test_ds: DatasetVersion,
    options: dict[str, Any], random_state: int, limit: int | None,
) -> tuple[SuiteCall, SuiteCall]:
    """The (before, after) suite calls: same data, statistics and options for both."""
    common: dict[str, Any] = dict(settings=settings, random_state=random_state,
                                  limit=None if suite == "integrity" else limit)
    pstub = ModelStub(name=parent.name, version=parent.version, id=parent.id,
                      digest=parent.digest)
    if suite == "integrity":
        Xa, ya = (result.dataset.X, result.dataset.y) if result.dataset is not None else (X, y)
        if test_ds is not None and test_ds.ref != ds.ref:
            # the held-out data the mitigation is measured on is the data the user vouches
            # for: it trains the backdoor detectors' reclassifier and calibrates STRIP
            options = {"trusted": test_ds.ref, **options}
        return (SuiteCall(model=pstub, target=target, X=X, y=y, dataset=ds,
                          options=dict(options), **common),
                SuiteCall(model=child, target=child_target, X=Xa, y=ya, dataset=None,
                          options=dict(options), **common))
    child_opts = dict(options)
    parent_opts = dict(options)
    if suite == "privacy":
        # members: what each model was trained on; non-members: the held-out test data
        child_opts.setdefault("members", ds.ref)
        if ds.ref in parent.trained_on:
            parent_opts.setdefault("members", ds.ref)
    return (SuiteCall(model=pstub, target=target, X=Xte, y=yte, dataset=test_ds,
                      options=parent_opts, **common),
            SuiteCall(model=child, target=child_target, X=Xte, y=yte, dataset=test_ds,
                      options=child_opts, **common))


def _remove_suite_artifacts(settings: Settings, results: list[AssessmentResult]) -> None:
    root = settings.artifacts_dir.resolve()
    for res in results:
        for value in res.artifacts.values():
            if isinstance(value, str) and Path(value).resolve().is_relative_to(root):
                p = Path(value)
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


# -- phase 1: read --------------------------------------------------------------------------
def _read(settings: Settings, *, model: str, data: str, test: str | None,
          suites: tuple[str, ...], limit: int | None, random_state: int) -> dict[str, Any]:
    from ..assess.suites import subsample
    from ..inventory.refs import next_version, resolve_dataset, resolve_model
    from ..targets.base import check_data
    from ..targets.loader import load_arrays, load_target

    with transaction(settings) as s:
        mv = resolve_model(s, model)
        if mv.framework != "torch" or mv.format != "torch-safetensors":
            raise InputError(
                f"model '{mv.ref}' is {mv.framework}/{mv.format}: mitigations retrain PyTorch "
                "models stored as a spec.json + model.safetensors folder"
            )
        target = load_target(s, settings, mv)
        spec = json.loads((Path(mv.path) / "spec.json").read_text())
        ds = resolve_dataset(s, data)
        X, y = check_data(target, *load_arrays(ds), where=f"dataset '{ds.ref}'")
        test_ds = resolve_dataset(s, test) if test else _test_dataset_of(s, mv, ds)
        if test_ds.id == ds.id:
            raise InputError(
                f"--test '{test_ds.ref}' is the training data: before / after numbers need "
                "held-out data the models were not trained on"
            )
        Xte, yte = check_data(target, *load_arrays(test_ds), where=f"dataset '{test_ds.ref}'")
        Xte, yte = subsample(Xte, yte, limit, random_state)
        parent = ParentInfo(
            id=mv.id, ref=mv.ref, name=mv.name, version=mv.version, digest=mv.digest,
            domain=mv.domain, tier=mv.tier, tier_reason=mv.tier_reason, owner=mv.owner,
            intended_use=mv.intended_use, trained_on=[e.dataset.ref for e in mv.trained_on],
        )
        stored, stored_ids, stored_results = _stored_metrics(s, mv, suites, test_ds=test_ds, train_ds=ds,
                                             limit=limit, random_state=random_state)
        state = {
            "parent": parent, "spec": spec, "target": target, "X": X, "y": y,
            "X_test": Xte, "y_test": yte, "dataset": ds, "test_dataset": test_ds,
            "stored": stored, "stored_ids": stored_ids, "stored_results": stored_results,
            "next_version": next_version(s, ModelVersion, mv.name),
        }
        s.expunge(ds)
        s.expunge(test_ds)
    return state


def _test_dataset_of(session: Any, mv: ModelVersion, train: DatasetVersion) -> DatasetVersion:
    """The held-out dataset of the parent's latest assessment (never its training data)."""
    from sqlalchemy import select

    trained = {e.dataset_id for e in mv.trained_on} | {train.id}
    runs = session.execute(
        select(AssessmentRun).where(AssessmentRun.model_id == mv.id,
                                    AssessmentRun.dataset_id.is_not(None))
        .order_by(AssessmentRun.id.desc())
    ).scalars()
    for run in runs:
        if run.dataset_id not in trained:
            found = session.get(DatasetVersion, run.dataset_id)
            log.info("comparing on %s, the data of %s's run #%d", found.ref, mv.ref, run.id)
            return found
    raise InputError(
        f"no held-out data to compare '{mv.ref}' before and after: pass --test DATASET@VER "
        "(data the model was not trained on)"
    )


def _stored_metrics(
    session: Any, mv: ModelVersion, suites: tuple[str, ...], *, test_ds: DatasetVersion,
    train_ds: DatasetVersion, limit: int | None, random_state: int,
) -> tuple[dict[str, dict[str, Any]], dict[str, int], dict[str, AssessmentResult]]:
    """The parent's latest comparable run per suite: trustworthy, same digest, same data,
    same row limit and seed (so before and after saw the same points)."""
    from ..assess.runs import runs_for
    from ..findings import Finding

    metrics: dict[str, dict[str, Any]] = {}
    ids: dict[str, int] = {}
    results: dict[str, AssessmentResult] = {}
    for suite in suites:
        data_id = train_ds.id if suite == "integrity" else test_ds.id
        usable = [
            r for r in runs_for(session, mv, suite)
            if r.trustworthy and r.status == "complete" and r.model_digest == mv.digest
            and r.dataset_id == data_id
            and (r.params or {}).get("limit") == (None if suite == "integrity" else limit)
            and (r.params or {}).get("random_state", random_state) == random_state
        ]
        if usable:
            run = usable[-1]
            metrics[suite] = dict(run.metrics or {})
            ids[suite] = run.id
            results[suite] = AssessmentResult(
                suite=suite, metrics=dict(run.metrics or {}), params=dict(run.params or {}),
                warnings=list(run.warnings or []), trustworthy=run.trustworthy,
                findings=[Finding(threat_id=f.threat_id, severity=f.severity, title=f.title,
                                  detail=f.detail, metric=f.metric, value=f.value,
                                  evidence=dict(f.evidence or {})) for f in run.findings],
            )
    return metrics, ids, results


# -- phase 2 helpers ------------------------------------------------------------------------
def _target(result: MitigationResult) -> Any:
    from ..targets.torch_target import TorchTarget

    return TorchTarget.from_spec(result.module, result.spec)


_SUITE_ROWS: list[tuple[str, str, str, str]] = [
    # suite, metric key, label, better
    ("evasion", "ars", "ARS (robust accuracy at eps {eps})", "higher"),
    ("privacy", "membership_advantage", "membership advantage", "lower"),
    ("privacy", "membership_auc", "membership AUC", "lower"),
    ("integrity", "label_issue_fraction", "label-issue fraction", "lower"),
]


def _suite_rows(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> list[Comparison]:
    rows = []
    for suite, key, label, better in _SUITE_ROWS:
        b = (before.get(suite) or {}).get(key)
        a = (after.get(suite) or {}).get(key)
        if a is None and b is None:
            continue
        eps = (after.get(suite) or before.get(suite) or {}).get("eps")
        rows.append(Comparison(key, label.format(eps=f"{eps:.4g}" if eps is not None else "?"),
                               b, a, better))
    return rows



__all__ = ["Comparison", "MitigationReport", "apply_mitigation", "module_proba", "write_npz"]
