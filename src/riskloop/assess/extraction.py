"""Model extraction: how well can a copy be trained from the model's answers alone?

:class:`QuerySurrogateExtraction` plays a query-budgeted attacker. It sends unlabelled inputs
from its own pool (data of the same kind, never the victim's labels) to the target and trains
a surrogate on the answers, in two modes:

- ``labels``: only the predicted class is used (Copycat CNN, Correia-Silva et al. 2018,
  "Copycat CNN: Stealing Knowledge by Persuading Confession with Random Non-Labeled Data").
- ``probabilities``: the full probability vector is matched with a soft cross-entropy
  (Knockoff Nets, Orekondy et al. 2019, "Knockoff Nets: Stealing Functionality of Black-Box
  Models").

For each query budget it reports fidelity (agreement of surrogate and target on held-out
data; Jagielski et al. 2020 call this "fidelity" as opposed to accuracy) and the surrogate's
accuracy on the true labels. Budgets are nested: a larger budget reuses the smaller budget's
queries, as a real attacker's would, so the target answers ``max(budgets)`` rows in total.
The curve also tells the monitor how many queries a copy of a given fidelity costs.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..errors import InputError
from ..findings import AssessmentResult, Finding, Severity
from ..targets.base import ACCESS_LABEL, Target, encode_labels
from .privacy._fit import learner_for

log = logging.getLogger(__name__)

THREAT = "model-extraction"
MODES = ("labels", "probabilities")
DEFAULT_BUDGETS = (50, 100, 200, 400, 800)
MSG_BAD_BUDGET = (
    "bad query budget {budget}: a budget is a positive number of queries (rows sent to the "
    "model), e.g. -o budgets=100,200,400"
)


def check_budgets(budgets: Any) -> tuple[int, ...]:
    """Sorted, unique, positive integer budgets; a clear error otherwise."""
    try:
        values = [int(b) for b in budgets]
    except (TypeError, ValueError):
        raise InputError(MSG_BAD_BUDGET.format(budget=budgets)) from None
    if not values:
        raise InputError(MSG_BAD_BUDGET.format(budget="(none)"))
    for b, raw in zip(values, budgets, strict=True):
        if b < 1 or float(raw) != b:
            raise InputError(MSG_BAD_BUDGET.format(budget=raw))
    return tuple(sorted(set(values)))


class QuerySurrogateExtraction:
    """Query-budgeted surrogate training, labels-only and with probabilities.

    Examples::

        ext = QuerySurrogateExtraction(budgets=(50, 100, 200), random_state=0)
        result = ext.run(target, X_pool, X_test, y_test)
        ext.curve_            # [{"budget", "mode", "fidelity", "accuracy"}, ...]
    """

    name = "query-surrogate"
    threats = (THREAT,)
    access = "black-box"
    requires = ("torch",)

    def __init__(
        self,
        *,
        budgets: tuple[int, ...] | list[int] = DEFAULT_BUDGETS,
        modes: tuple[str, ...] | list[str] = MODES,
        architecture: str = "auto",
        epochs: int = 30,
        batch_size: int = 32,
        lr: float = 1e-3,
        fidelity_levels: tuple[float, ...] = (0.8, 0.9, 0.95),
        random_state: int = 0,
    ) -> None:
        self.budgets = check_budgets(budgets)
        bad = [m for m in modes if m not in MODES]
        if bad or not modes:
            raise InputError(f"unknown extraction mode {bad[0] if bad else '(none)'}: choose from {', '.join(MODES)}")
        self.modes = tuple(dict.fromkeys(modes))
        self.architecture = architecture
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.fidelity_levels = tuple(fidelity_levels)
        self.random_state = int(random_state)

    def get_params(self) -> dict[str, Any]:
        return {"budgets": list(self.budgets), "modes": list(self.modes),
                "architecture": self.architecture, "epochs": self.epochs,
                "batch_size": self.batch_size, "lr": self.lr, "random_state": self.random_state}

    def run(self, target: Target, X_pool: Any, X_test: Any, y_test: Any | None = None) -> AssessmentResult:
        modes = self.modes
        warnings: list[str] = []
        if target.access == ACCESS_LABEL and "probabilities" in modes:
            modes = tuple(m for m in modes if m != "probabilities")
            warnings.append("the target answers labels only: the probabilities mode was skipped")
            if not modes:
                raise InputError("the target answers labels only: run extraction with mode 'labels'")
        pool = target.input_spec.check(X_pool, where="extraction query pool")
        test = target.input_spec.check(X_test, where="extraction test data")
        if len(test) == 0:
            raise InputError("extraction needs held-out test data to measure fidelity on")
        y_true = encode_labels(y_test, target.classes, where="extraction test labels") if y_test is not None else None
        budgets = tuple(b for b in self.budgets if b <= len(pool))
        if len(budgets) < len(self.budgets):
            dropped = [b for b in self.budgets if b > len(pool)]
            warnings.append(f"budgets {dropped} exceed the {len(pool)} rows of query data and were not measured")
        if not budgets:
            raise InputError(
                f"every query budget exceeds the {len(pool)} rows of query data: pass smaller "
                "budgets or more query data (--query-data)"
            )
        left = getattr(target, "budget_left", None)
        if left is not None and budgets[-1] + len(test) > left:
            raise InputError(
                f"this extraction needs {budgets[-1] + len(test)} queries ({budgets[-1]} to train, "
                f"{len(test)} to measure fidelity) but the endpoint's query budget has {left} left: "
                "raise --query-budget or lower the budgets"
            )
        rng = np.random.default_rng(self.random_state)
        order = rng.permutation(len(pool))[: budgets[-1]]
        queries = pool[order]
        answers = np.asarray(target.predict_proba(queries), dtype=np.float64)  # max(budgets) queries
        answer_labels = answers.argmax(axis=1)
        target_test = np.asarray(target.predict_proba(test)).argmax(axis=1)
        curve: list[dict[str, Any]] = []
        for mode in modes:
            for b in budgets:
                learner = learner_for(
                    target, architecture=self.architecture, soft_labels=(mode == "probabilities"),
                    epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                    random_state=self.random_state,
                )
                Y = answers[:b] if mode == "probabilities" else answer_labels[:b]
                if mode == "labels" and hasattr(learner, "estimator") and len(np.unique(Y)) < 2:
                    warnings.append(f"budget {b}: the target gave one label only; nothing to learn")
                    continue
                learner.fit(queries[:b], Y)
                pred = learner.predict_proba(test).argmax(axis=1)
                point = {"budget": int(b), "mode": mode, "fidelity": float(np.mean(pred == target_test)),
                         "accuracy": float(np.mean(pred == y_true)) if y_true is not None else None}
                curve.append(point)
                log.info("extraction %s budget %d: fidelity %.3f", mode, b, point["fidelity"])
        self.curve_ = curve
        top = budgets[-1]
        at_max = max(p["fidelity"] for p in curve if p["budget"] == top)
        reach: dict[str, dict[str, int | None]] = {}
        for mode in modes:
            pts = [p for p in curve if p["mode"] == mode]
            reach[mode] = {f"{lvl:g}": next((p["budget"] for p in pts if p["fidelity"] >= lvl), None)
                           for lvl in self.fidelity_levels}
        self.metrics_ = {
            "fidelity_curve": curve, "fidelity_at_max_budget": at_max, "max_budget": top,
            "queries_to_fidelity": reach, "queries_used": int(len(queries) + len(test)),
            "target_accuracy": float(np.mean(target_test == y_true)) if y_true is not None else None,
        }
        return AssessmentResult(
            suite="extraction", metrics=dict(self.metrics_), findings=[self._finding(top, at_max)],
            warnings=warnings, params={"attack": self.name, **self.get_params()},
        )

    def _finding(self, top: int, at_max: float) -> Finding:
        if at_max >= 0.9:
            sev = Severity.HIGH
        elif at_max >= 0.7:
            sev = Severity.MEDIUM
        elif at_max >= 0.5:
            sev = Severity.LOW
        else:
            sev = Severity.INFO
        best = max((p for p in self.curve_ if p["budget"] == top), key=lambda p: p["fidelity"])
        return Finding(
            threat_id=THREAT, severity=sev,
            title=f"a surrogate trained on {top} queries agrees with the model on {at_max:.1%} of held-out inputs",
            detail=(f"Best mode at the largest budget: {best['mode']}. Fidelity per budget and mode "
                    "is in the run's fidelity_curve; the monitor's extraction watchdog can use it "
                    "to size its query-rate limits."),
            metric="fidelity_at_max_budget", value=at_max,
            evidence={"fidelity_curve": self.curve_, "queries_to_fidelity": self.metrics_["queries_to_fidelity"]},
        )


SUITE_OPTIONS = ["budgets", "modes", "query_data", "architecture", "epochs"]


def _default_budgets(pool: int) -> tuple[int, ...]:
    steps = [b for b in (25, 50, 100, 200, 400, 800, 1600, 3200) if b < pool]
    return tuple(steps[-5:] + [pool]) if pool > 0 else ()


def run_extraction_suite(request: Any) -> AssessmentResult:
    """Suite runner for :mod:`riskloop.assess.suites` (``--suite extraction``).

    The attacker's query pool is ``-o query_data=DATASET@VER`` (its labels are never used)
    with ``--data`` as held-out test data; without it, ``--data`` is split in half, seeded:
    one half to query with, the other to measure fidelity on.
    """
    from .privacy._data import dataset_arrays, option, reject_unknown, seeded_split

    opts = dict(request.options)
    budgets_raw = opts.pop("budgets", None)
    modes_raw = opts.pop("modes", None)
    query_ref = option(opts, "query_data", None, str, suite="extraction")
    architecture = option(opts, "architecture", "auto", str, suite="extraction")
    epochs = option(opts, "epochs", 30, int, suite="extraction")
    reject_unknown(opts, suite="extraction", known=SUITE_OPTIONS)
    budgets = None
    if budgets_raw is not None:
        parts = budgets_raw if isinstance(budgets_raw, list | tuple) else str(budgets_raw).split(",")
        budgets = check_budgets([p.strip() if isinstance(p, str) else p for p in parts])
    modes = MODES if modes_raw is None else tuple(
        m.strip() for m in (modes_raw if isinstance(modes_raw, list | tuple) else str(modes_raw).split(","))
        if str(m).strip())
    target, seed = request.target, request.random_state
    params: dict[str, Any] = {}
    if query_ref:
        ds, pool, _ = dataset_arrays(request.settings, query_ref)
        X_test, y_test = request.X, request.y
        params["query_data"] = ds.ref
    else:
        a, b = seeded_split(len(request.X), 0.5, seed)
        pool, X_test, y_test = request.X[a], request.X[b], request.y[b]
        params["query_data"] = "half of --data"
    if budgets is None:
        budgets = _default_budgets(len(pool))
        if not budgets:
            raise InputError("extraction needs query data: --data is empty")
    if request.progress is not None:
        request.progress("training surrogates", 0, 1)
    ext = QuerySurrogateExtraction(budgets=budgets, modes=modes, architecture=architecture,
                                   epochs=epochs, random_state=seed)
    result = ext.run(target, pool, X_test, y_test)
    result.params.update(params)
    if request.progress is not None:
        request.progress("done", 1, 1)
    return result
