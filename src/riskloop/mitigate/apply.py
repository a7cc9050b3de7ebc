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
import uuid
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..errors import InputError
from ..findings import AssessmentResult
from ..store import audit
from ..store.db import transaction
from ..store.models import AssessmentRun, DatasetVersion, ModelVersion
from .base import MitigationResult, Progress, accuracy
from .feature_squeezing import DEFENCE_FILE, FeatureSqueezing, attack_and_evaluate, module_proba
from .reassess import ModelStub, SuiteCall, standard_eps, try_suite
from .registry import create

log = logging.getLogger(__name__)


@dataclass
class Comparison:
    """One row of the before / after table."""

    metric: str
    label: str
    before: Any
    after: Any
    better: str | None = None  # "higher", "lower" or None (informational)

    @property
    def change(self) -> float | None:
        if isinstance(self.before, int | float) and isinstance(self.after, int | float):
            return float(self.after) - float(self.before)
        return None


@dataclass
class MitigationReport:
    """What ``riskloop mitigate`` prints (and returns as JSON)."""

    parent: str
    model: str
    digest: str
    path: str
    method: str
    params: dict[str, Any]
    dataset: str
    test: str
    new_dataset: str | None
    metrics: dict[str, Any]
    rows: list[Comparison]
    runs: dict[str, int] = field(default_factory=dict)
    parent_runs: dict[str, int] = field(default_factory=dict)
    train_seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rows"] = [{**asdict(r), "change": r.change} for r in self.rows]
        return d


@dataclass
class _Parent:
    id: int
    ref: str
    name: str
    version: int
    digest: str
    domain: str
    tier: str
    tier_reason: str
    owner: str | None
    intended_use: str | None
    trained_on: list[str]


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
        return _write(settings, parent=parent, result=result, ds=ds, test_ds=test_ds,
                      rows=rows, after=after, before_new=before_new,
                      reused=state["stored_ids"])
    except BaseException:
        _remove_suite_artifacts(settings, [*after.values(), *before_new.values()])
        raise


def _tick(progress: Progress | None, phase: str, done: int, total: int) -> None:
    if progress is not None:
        progress(phase, done, total)


def _suite_calls(
    settings: Settings, suite: str, *, parent: _Parent, child: ModelStub, target: Any,
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
        parent = _Parent(
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


# -- phase 3: write -------------------------------------------------------------------------
def write_npz(path: Path, X: np.ndarray, y: np.ndarray) -> Path:
    """An ``.npz`` with fixed zip timestamps, so equal arrays give equal bytes (and digests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in (("X", X), ("y", y)):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)
    return path


def _write(
    settings: Settings, *, parent: _Parent, result: MitigationResult,
    ds: DatasetVersion, test_ds: DatasetVersion, rows: list[Comparison],
    after: dict[str, AssessmentResult], before_new: dict[str, AssessmentResult],
    reused: dict[str, int],
) -> MitigationReport:
    from ..assess.runs import record_run
    from ..inventory.assets import register_dataset, register_model
    from ..inventory.refs import next_version, resolve_dataset, resolve_model
    from ..targets.torchspec import save_torch_model

    root = settings.artifacts_dir
    staging = root / f".staging-{uuid.uuid4().hex[:12]}"
    created: list[Path] = []
    try:
        save_torch_model(staging / "model", result.module, result.spec)
        for name, text in result.files.items():
            (staging / "model" / name).write_text(text)
        if result.dataset is not None:
            write_npz(staging / "data.npz", result.dataset.X, result.dataset.y)
        with transaction(settings) as s:
            pmv = resolve_model(s, parent.ref)
            train_ds = resolve_dataset(s, ds.ref)
            test = resolve_dataset(s, test_ds.ref)
            new_ds = None
            if result.dataset is not None:
                ver = next_version(s, DatasetVersion, train_ds.name)
                dest = root / "datasets" / train_ds.name / f"v{ver}.npz"
                _place(staging / "data.npz", dest, created)
                new_ds = register_dataset(
                    s, path=dest, name=train_ds.name, version=ver, actor=settings.actor,
                    sensitive=list(train_ds.sensitive or []), target=train_ds.target or "y",
                    derived_from=train_ds, derivation=result.dataset.derivation,
                )
            ver = next_version(s, ModelVersion, parent.name)
            dest = root / "models" / parent.name / f"v{ver}"
            _place(staging / "model", dest, created)
            if result.method == "squeezing":
                trained_on = parent.trained_on  # same weights: same training data
            else:
                trained_on = [new_ds.ref if new_ds else train_ds.ref]
            derivation = {
                "method": result.method, "params": _plain(result.params),
                "dataset": train_ds.ref, "test_dataset": test.ref,
                "new_dataset": new_ds.ref if new_ds else None,
                "metrics": _plain({k: v for k, v in result.metrics.items()
                                   if k not in ("accountant_history", "attacks")}),
                "train_seconds": round(result.train_seconds, 3),
            }
            tier_override = pmv.tier != _default_tier(parent.domain)
            child = register_model(
                s, path=dest, name=parent.name, version=ver, framework="torch",
                domain=parent.domain, actor=settings.actor, trained_on=trained_on,
                derived_from=parent.ref, owner=parent.owner, intended_use=parent.intended_use,
                tier=parent.tier if tier_override else None,
                tier_reason=f"inherited from {parent.ref} ({parent.tier_reason})" if tier_override else None,
                derivation=derivation,
            )
            def data_for(suite: str, new: bool) -> DatasetVersion:
                if suite != "integrity":
                    return test
                return (new_ds or train_ds) if new else train_ds

            runs = {suite: record_run(s, actor=settings.actor, model=child,
                                      dataset=data_for(suite, True), result=res).id
                    for suite, res in after.items()}
            parent_runs = dict(reused)
            parent_runs.update({suite: record_run(s, actor=settings.actor, model=pmv,
                                                  dataset=data_for(suite, False), result=res).id
                                for suite, res in before_new.items()})
            table = [{**asdict(r), "change": r.change} for r in rows]
            audit.append(
                s, actor=settings.actor, action="mitigation.apply", subject=f"model:{child.ref}",
                payload={"parent": parent.ref, "parent_digest": parent.digest,
                         "model": child.ref, "digest": child.digest, "method": result.method,
                         "params": _plain(result.params), "dataset": train_ds.ref,
                         "test_dataset": test.ref, "new_dataset": new_ds.ref if new_ds else None,
                         "runs": runs, "parent_runs": parent_runs, "before_after": _plain(table)},
            )
            report = MitigationReport(
                parent=parent.ref, model=child.ref, digest=child.digest, path=str(dest),
                method=result.method, params=_plain(result.params), dataset=train_ds.ref,
                test=test.ref, new_dataset=new_ds.ref if new_ds else None,
                metrics=_plain(result.metrics), rows=rows, runs=runs, parent_runs=parent_runs,
                train_seconds=result.train_seconds,
                warnings=list(result.warnings)
                + [f"{k}: {w}" for k, r in after.items() for w in r.warnings],
            )
    except BaseException:
        for p in created:
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return report


def _place(src: Path, dest: Path, created: list[Path]) -> None:
    """Move a staged file or folder to its final place (a stale, unregistered copy is replaced)."""
    if dest.exists():
        log.warning("replacing unregistered leftover '%s'", dest)
        shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    src.replace(dest)
    created.append(dest)


def _default_tier(domain: str) -> str:
    from ..inventory.profiles import profile_for

    return profile_for(domain).tier


def _plain(obj: Any) -> Any:
    from ..assess.runs import _jsonable

    return _jsonable(obj)


__all__ = ["Comparison", "MitigationReport", "apply_mitigation", "module_proba", "write_npz"]
