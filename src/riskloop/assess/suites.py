"""Assessment suites by name, and the one function that runs and records a suite.

A suite is a function ``runner(request) -> AssessmentResult``. Registering one is one line::

    SUITES["privacy"] = run_privacy_suite

:func:`run_assessment` resolves the model and dataset, loads the model through the safe
loader, runs the suite *outside* any database transaction (attacks take a while and must not
hold the store's write lock), then records the run, its findings and an audit event in one
transaction. If anything fails before that, nothing is recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..errors import InputError
from ..findings import AssessmentResult
from ..inventory.refs import resolve_dataset, resolve_model
from ..store.db import transaction
from ..store.models import DatasetVersion, ModelVersion
from ..targets.base import Target
from ..targets.loader import load_arrays, load_target
from .evasion.suite import run_suite as run_evasion_suite
from .extraction import run_extraction_suite
from .fairness import run_fairness_suite
from .integrity.suite import run_integrity_suite
from .privacy.suite import run_privacy_suite
from .runs import record_run, run_dict

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]


@dataclass
class SuiteRequest:
    """Everything a suite gets: the loaded target, the data and the records they came from."""

    settings: Settings
    model: ModelVersion
    dataset: DatasetVersion | None
    target: Target
    X: np.ndarray
    y: np.ndarray
    options: dict[str, Any] = field(default_factory=dict)
    random_state: int = 0
    progress: Progress | None = None


SuiteRunner = Callable[[SuiteRequest], AssessmentResult]

SUITES: dict[str, SuiteRunner] = {
    "evasion": run_evasion_suite,
    "privacy": run_privacy_suite,
    "extraction": run_extraction_suite,
    "integrity": run_integrity_suite,
    "fairness": run_fairness_suite,
}


def get_suite(name: str) -> SuiteRunner:
    try:
        return SUITES[name]
    except KeyError:
        raise InputError(f"unknown suite '{name}': choose one of {', '.join(sorted(SUITES))}") from None


def subsample(X: np.ndarray, y: np.ndarray, limit: int | None, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """At most ``limit`` rows, drawn without replacement with a seeded generator."""
    if limit is None or limit >= len(X):
        return X, y
    if limit < 1:
        raise InputError(f"bad --limit {limit}: must be a positive number of rows")
    idx = np.sort(np.random.default_rng(random_state).choice(len(X), size=limit, replace=False))
    return X[idx], y[idx]


def run_assessment(
    settings: Settings,
    *,
    model_ref: str,
    data_ref: str,
    suite: str,
    options: dict[str, Any] | None = None,
    trust: bool = False,
    endpoint: str | None = None,
    query_budget: int | None = None,
    limit: int | None = None,
    random_state: int = 0,
    progress: Progress | None = None,
    runner: SuiteRunner | None = None,
) -> dict[str, Any]:
    """Run ``suite`` on a registered model and dataset; returns the stored run as a dict.
    ``runner`` replaces the suite's own (``assess.executors.runner_for`` sends it elsewhere)."""
    runner = runner or get_suite(suite)
    started = datetime.now(UTC)
    with transaction(settings) as s:
        model = resolve_model(s, model_ref)
        dataset = resolve_dataset(s, data_ref)
        target = load_target(s, settings, model, trust=trust)
        X, y = load_arrays(dataset)
        s.expunge_all()
    if endpoint:
        from ..targets.http_target import HttpTarget

        target = HttpTarget(endpoint, classes=target.classes, input_spec=target.input_spec,
                            query_budget=query_budget)
        target.check_reachable()
    n_total = len(X)
    X, y = subsample(X, y, limit, random_state)
    target.input_spec = target.input_spec.complete(X)
    request = SuiteRequest(settings=settings, model=model, dataset=dataset, target=target, X=X,
                           y=y, options=dict(options or {}), random_state=random_state,
                           progress=progress)
    result = runner(request)
    result.params.update({
        "suite": suite, "model": model.ref, "dataset": dataset.ref, "rows": n_total,
        "limit": limit, "random_state": random_state, "endpoint": endpoint,
        "query_budget": query_budget, "trust": trust, "format": model.format,
    })
    try:
        with transaction(settings) as s:
            mv = s.get(ModelVersion, model.id)
            ds = s.get(DatasetVersion, dataset.id)
            if mv is None or mv.digest != model.digest:
                raise InputError(f"model '{model.ref}' changed while it was assessed: run again")
            run = record_run(s, actor=settings.actor, model=mv, dataset=ds, result=result,
                             started_at=started)
            out = run_dict(run)
            out["model"], out["dataset"] = mv.ref, ds.ref if ds else None
    except BaseException:
        root = settings.artifacts_dir.resolve()
        for value in result.artifacts.values():
            if isinstance(value, str) and Path(value).resolve().is_relative_to(root):
                Path(value).unlink(missing_ok=True)
        raise
    return out
