"""Recording a mitigation: the before / after table, and the one write transaction that
stores the new files, the derived dataset, the new model version, its runs and the audit event.
"""

from __future__ import annotations

import logging
import shutil
import uuid
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..findings import AssessmentResult
from ..store import audit
from ..store.db import transaction
from ..store.models import DatasetVersion, ModelVersion
from .base import MitigationResult

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
class ParentInfo:
    """What the write phase needs to know about the parent version."""

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


def write_npz(path: Path, X: np.ndarray, y: np.ndarray) -> Path:
    """An ``.npz`` with fixed zip timestamps, so equal arrays give equal bytes (and digests)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, arr in (("X", X), ("y", y)):
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)
    return path


def write_version(
    settings: Settings, *, parent: ParentInfo, result: MitigationResult,
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


