"""Where an assessment's work runs: ``riskloop assess --executor local|ray [--address ...]``.

The evasion suite is split into fixed shards of rows (``shard_rows``, 256 by default); each
shard runs the whole attack ensemble (every attack at every budget, with the run's seed) as one
task, and the shards' results are merged into one :class:`AssessmentResult`. The other suites
run as a single task. What runs where does not change the result: the shards, their seeds and
the merge are the same for every executor, so a Ray run equals the local run on the same seed.

- :class:`LocalExecutor` (the default of ``riskloop assess``): a process pool on this machine
  (``spawn``ed workers, ``max_workers`` defaults to the CPU count, each worker gets an equal
  share of the cores as torch threads so the pool does not oversubscribe them). A run with a
  single shard (256 rows or fewer) runs in this process: a worker's start-up (importing torch,
  about 2 s) would cost more than it saves.
- ``inline``: this process, no shards (what ``--endpoint`` runs use: an HTTP target's query
  budget is counted in one client).
- :class:`RayExecutor`: Ray tasks, on a local Ray instance or the cluster at ``address``
  (``pip install 'riskloop[ray]'``). Each task gets the loaded model and its rows, so workers
  need no access to the store.

Merged evasion metrics are exact for counts and accuracies (robust accuracy per attack and
budget, the curve, ARS, clean accuracy, queries); ``median_perturbation`` of a step is the
median of the shards' medians when there is more than one shard.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..findings import AssessmentResult
from .suites import SuiteRequest, SuiteRunner, get_suite

log = logging.getLogger(__name__)
EXECUTORS = ("local", "ray", "inline")
SHARD_ROWS = 256


class Executor:
    """Runs ``fn(*args)`` for each args tuple and returns the results in order."""

    name = "executor"

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]],
            on_done: Callable[[int], None] | None = None) -> list[Any]:
        """Results in call order; ``on_done(finished)`` after each call completes."""
        raise NotImplementedError

    def close(self) -> None:
        """Release workers (a no-op where there are none)."""


class LocalExecutor(Executor):
    """A process pool on this machine; one call runs in-process."""

    name = "local"

    def __init__(self, *, max_workers: int | None = None, threads: int | None = None) -> None:
        if max_workers is not None and max_workers < 1:
            raise InputError(f"bad worker count {max_workers}: use 1 or more")
        self.max_workers = max_workers or os.cpu_count() or 1
        self.threads = threads

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]],
            on_done: Callable[[int], None] | None = None) -> list[Any]:
        if len(calls) <= 1 or self.max_workers == 1:
            out = []
            for c in calls:
                out.append(fn(*c))
                if on_done:
                    on_done(len(out))
            return out
        workers = min(self.max_workers, len(calls))
        threads = self.threads or max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            futures = [pool.submit(fn, *c) for c in calls]
            for done, _ in enumerate(as_completed(futures), start=1):
                if on_done:
                    on_done(done)
            return [f.result() for f in futures]


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class RayExecutor(Executor):
    """Ray tasks on a local instance (started here) or the cluster at ``address``."""

    name = "ray"

    def __init__(self, *, address: str | None = None, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise InputError("the ray executor needs Ray: pip install 'riskloop[ray]'") from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"ignore_reinit_error": True, "log_to_driver": False,
                                      "include_dashboard": False}
            if address:
                kwargs["address"] = address
            else:
                kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
            try:
                ray.init(**kwargs)
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise InputError(f"cannot reach Ray at {address or 'a local instance'} ({exc}): "
                                 "check --address (ray://HOST:10001 or HOST:6379)") from None
            self._started = True

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple[Any, ...]],
            on_done: Callable[[int], None] | None = None) -> list[Any]:
        remote = self._ray.remote(fn)
        refs = [remote.remote(*c) for c in calls]
        pending = list(refs)
        while pending and on_done:
            _, pending = self._ray.wait(pending, num_returns=1)
            on_done(len(refs) - len(pending))
        return list(self._ray.get(refs))

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()
            self._started = False


def get_executor(name: str, *, address: str | None = None, max_workers: int | None = None,
                 threads: int | None = None) -> Executor:
    if name == "local":
        if address:
            raise InputError("--address applies to --executor ray only")
        return LocalExecutor(max_workers=max_workers, threads=threads)
    if name == "ray":
        return RayExecutor(address=address, num_cpus=max_workers)
    raise InputError(f"unknown executor '{name}': choose one of {', '.join(EXECUTORS)}")


# -- tasks (module-level functions, so both process pools and Ray can ship them) ----------


def _run_suite_task(suite: str, request: SuiteRequest) -> AssessmentResult:
    return get_suite(suite)(request)


def _evasion_shard_task(request: SuiteRequest) -> dict[str, Any]:
    """One shard of the evasion suite; adversarial examples are written to a scratch folder
    (the merged ones are saved by the caller)."""
    with tempfile.TemporaryDirectory(prefix="riskloop-shard-") as tmp:
        settings = replace(request.settings, workspace=Path(tmp))
        result = get_suite("evasion")(replace(request, settings=settings, progress=None))
        x_adv = robust = None
        saved = result.artifacts.get("adversarial_examples")
        if saved:
            with np.load(saved, allow_pickle=False) as npz:
                x_adv, robust = npz["x_adv"], npz["robust"]
    return {"metrics": result.metrics, "warnings": result.warnings, "params": result.params,
            "x_adv": x_adv, "robust": robust, "rows": len(request.X)}


def shards(n: int, shard_rows: int) -> list[slice]:
    if shard_rows < 1:
        raise InputError(f"bad shard size {shard_rows}: use 1 or more rows")
    return [slice(i, min(i + shard_rows, n)) for i in range(0, max(n, 1), shard_rows)]


def merge_evasion(parts: list[dict[str, Any]]) -> AssessmentResult:
    """One evasion result from the shards' results (see the module notes)."""
    from .evasion.suite import findings_for

    n = sum(p["rows"] for p in parts)
    first = parts[0]["metrics"]

    def wmean(values: list[float]) -> float:
        return float(sum(v * p["rows"] for v, p in zip(values, parts, strict=True)) / n)

    per_attack = []
    for k, row in enumerate(first["per_attack"]):
        rows = [p["metrics"]["per_attack"][k] for p in parts]
        attacked, fooled = sum(r["attacked"] for r in rows), sum(r["fooled"] for r in rows)
        meds = [r["median_perturbation"] for r in rows if r["median_perturbation"] is not None]
        per_attack.append({
            "attack": row["attack"], "eps": row["eps"], "attacked": attacked, "fooled": fooled,
            "robust_accuracy": wmean([r["robust_accuracy"] for r in rows]),
            "success_rate": fooled / attacked if attacked else 0.0,
            "median_perturbation": float(np.median(meds)) if meds else None,
            "queries": sum(r["queries"] for r in rows),
            "seconds": round(sum(r["seconds"] for r in rows), 4),
        })
    curve = []
    for k, c in enumerate(first["curve"]):
        points = [p["metrics"]["curve"][k] for p in parts]
        proved = [q.get("verified_accuracy") for q in points]
        curve.append({"eps": c["eps"], "robust_accuracy": wmean([q["robust_accuracy"] for q in points]),
                      "verified_accuracy": None if None in proved else wmean(proved)})
    warnings = list(dict.fromkeys(w for p in parts for w in p["warnings"]))
    metrics = {**first, "ars": wmean([p["metrics"]["ars"] for p in parts]),
               "clean_accuracy": wmean([p["metrics"]["clean_accuracy"] for p in parts]),
               "curve": curve, "per_attack": per_attack, "points": n,
               "verification": _merge_verification(parts),
               "queries": sum(p["metrics"]["queries"] for p in parts),
               "checks": {"shards": [p["metrics"]["checks"] for p in parts]}}
    result = AssessmentResult(suite="evasion", metrics=metrics, warnings=warnings,
                              trustworthy=not warnings, params=dict(parts[0]["params"]))
    result.findings = findings_for(result)
    if all(p["x_adv"] is not None for p in parts):
        result.artifacts["_x_adv"] = np.concatenate([p["x_adv"] for p in parts])
        result.artifacts["_robust"] = np.concatenate([p["robust"] for p in parts])
    return result


def _merge_verification(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The shards' verification records, summed per eps."""
    first = parts[0]["metrics"].get("verification")
    if not first:
        return {}
    by_eps: dict[float, list[dict[str, Any]]] = {}
    for p in parts:
        for rec in p["metrics"]["verification"]["per_eps"]:
            by_eps.setdefault(rec["eps"], []).append(rec)
    return {**first, "per_eps": [
        {"eps": eps, "checked": sum(r["checked"] for r in recs), "proved": sum(r["proved"] for r in recs),
         "seconds": round(sum(r["seconds"] for r in recs), 4),
         "skipped": next((r["skipped"] for r in recs if r["skipped"]), None),
         "tight": any(r.get("tight") for r in recs)}
        for eps, recs in by_eps.items()
    ]}


def runner_for(suite: str, executor: Executor, *, shard_rows: int = SHARD_ROWS) -> SuiteRunner:
    """A suite runner for ``suites.run_assessment`` that sends the work to ``executor``."""
    get_suite(suite)

    def run(request: SuiteRequest) -> AssessmentResult:
        if suite != "evasion" and isinstance(executor, LocalExecutor):
            return get_suite(suite)(request)  # one task: this process, with its progress bar
        if suite != "evasion":
            return executor.map(_run_suite_task, [(suite, replace(request, progress=None))])[0]
        from .evasion.suite import save_adversarial_examples

        cuts = shards(len(request.X), shard_rows)
        if len(cuts) == 1 and isinstance(executor, LocalExecutor):
            # one shard runs here anyway: run it directly, with its progress bar
            result = get_suite(suite)(request)
            result.params.update({"executor": executor.name, "shard_rows": shard_rows, "shards": 1})
            return result
        parts_in = [replace(request, X=request.X[s], y=request.y[s], progress=None) for s in cuts]
        label = f"{len(parts_in)} shards on {executor.name}"
        if request.progress:
            request.progress(label, 0, len(parts_in))

        def done(k: int) -> None:
            if request.progress:
                request.progress(label, k, len(parts_in))

        parts = executor.map(_evasion_shard_task, [(p,) for p in parts_in], on_done=done)
        if request.progress:
            request.progress("merging", len(parts), len(parts))
        result = merge_evasion(parts)
        result.params.update({"executor": executor.name, "shard_rows": shard_rows,
                              "shards": len(parts)})
        model = request.model
        save_adversarial_examples(result, request.settings.artifacts_dir / "evasion",
                                  f"{model.name}-v{model.version}")
        return result

    return run
