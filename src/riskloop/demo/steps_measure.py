"""Demo steps of MEASURE: privacy and extraction on the digits CNN, fairness on arrests data.

- privacy: membership inference with the training set (from the model's lineage) as members
  and the test set as non-members, two reference models, and MI-Face inversion (the model is
  white-box), whose image lands in the workspace's artifacts folder.
- extraction: a surrogate trained from the CNN's answers at three query budgets, with labels
  only and with probabilities.
- fairness: scikit-lego's arrests data (shipped inside the package, offline) with skin colour
  as the sensitive attribute; a logistic regression trained on records in which a share of
  the favourable outcomes of Black defendants was removed (historically biased labels), stored
  as a skops file. The suite finds and names the disadvantaged group.

Everything runs on one torch thread with small budgets, so the three steps take seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..assess.suites import run_assessment
from ..inventory import assets
from ..store.db import transaction

if TYPE_CHECKING:
    from .scenario import DemoContext

PRIVACY_OPTIONS = {"reference_models": 2, "reference_epochs": 15, "inversion_steps": 100,
                   "max_candidates": 300}
EXTRACTION_OPTIONS = {"budgets": "50,100,200"}
BIAS_SHARE = 0.3


def assess_on_one_thread(ctx: DemoContext, ref: str, suite: str, options: dict[str, Any]) -> dict[str, Any]:
    """Run ``suite`` on ``ref`` against the demo's test data with one torch thread (the
    small demo models train and query fastest that way), restoring the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_assessment(ctx.settings, model_ref=ref, data_ref=ctx.refs["test"], suite=suite,
                              options=dict(options), random_state=ctx.random_state)
    finally:
        torch.set_num_threads(threads)


def step_privacy(ctx: DemoContext) -> Iterator[tuple[str, dict[str, Any]]]:
    run = assess_on_one_thread(ctx, ctx.refs["model"], "privacy", PRIVACY_OPTIONS)
    m = run["metrics"]
    yield "privacy", {
        "model": run["model"], "run": run["id"],
        "membership_auc": round(m["membership_auc"], 3),
        "advantage": round(m["membership_advantage"], 3),
        "tpr@1%fpr": m["tpr_at_1pct_fpr"] if m["tpr_at_1pct_fpr"] is None else round(m["tpr_at_1pct_fpr"], 3),
        "lowest_fpr": round(m["lowest_reachable_fpr"], 4),
        "inversion_gain": round(m["inversion_gain"], 3),
        "inversion_image": run["artifacts"].get("inversion_image", "-"),
        "severity": max((f["severity"] for f in run["findings"]), key=_rank, default="-"),
        "attacks": m["attacks"],
    }


def step_extraction(ctx: DemoContext) -> Iterator[tuple[str, dict[str, Any]]]:
    run = assess_on_one_thread(ctx, ctx.refs["model"], "extraction", EXTRACTION_OPTIONS)
    m = run["metrics"]
    curve = m["fidelity_curve"]
    by_mode = {mode: [round(p["fidelity"], 3) for p in curve if p["mode"] == mode]
               for mode in ("labels", "probabilities")}
    yield "extraction", {
        "model": run["model"], "run": run["id"], "budgets": EXTRACTION_OPTIONS["budgets"],
        "fidelity_labels": "/".join(map(str, by_mode["labels"])),
        "fidelity_probabilities": "/".join(map(str, by_mode["probabilities"])),
        "fidelity_at_max_budget": round(m["fidelity_at_max_budget"], 3),
        "severity": run["findings"][0]["severity"] if run["findings"] else "-",
        "curve": curve,
    }


def arrests_arrays(random_state: int = 0) -> tuple[np.ndarray, ...]:
    """Numeric features, released (1) / held (0), and colour (1 = Black), split 60/40."""
    from sklearn.model_selection import train_test_split
    from sklego.datasets import load_arrests

    df = load_arrests(as_frame=True)
    black = (df.colour == "Black").to_numpy().astype(np.int64)
    X = np.c_[df.year - 2000, df.age, df.employed == "Yes", df.citizen == "Yes", df.checks,
              black].astype(np.float32)
    y = (df.released == "Yes").to_numpy().astype(np.int64)
    return tuple(train_test_split(X, y, black, test_size=0.4, random_state=random_state, stratify=y))


def step_fairness(ctx: DemoContext) -> Iterator[tuple[str, dict[str, Any]]]:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    settings = ctx.settings
    ws = settings.workspace
    X_tr, X_te, y_tr, y_te, b_tr, b_te = arrests_arrays(ctx.random_state)
    rng = np.random.default_rng(ctx.random_state)
    biased = y_tr.copy()
    favoured = np.flatnonzero((b_tr == 1) & (y_tr == 1))
    biased[rng.choice(favoured, int(BIAS_SHARE * len(favoured)), replace=False)] = 0
    clf = LogisticRegression(max_iter=2000).fit(X_tr, biased)
    (ws / "data").mkdir(parents=True, exist_ok=True)
    (ws / "models").mkdir(parents=True, exist_ok=True)
    train_path, test_path = ws / "data" / "arrests-train.npz", ws / "data" / "arrests-test.npz"
    for path, X, y, b in ((train_path, X_tr, biased, b_tr), (test_path, X_te, y_te, b_te)):
        with open(path, "wb") as fh:
            np.savez(fh, X=X, y=y, colour=np.where(b == 1, "Black", "White"))
    model_path = ws / "models" / "release-scorer.skops"
    sio.dump(clf, model_path)
    with transaction(settings) as s:
        tr = assets.register_dataset(s, path=train_path, name="arrests-train", target="y",
                                     sensitive=["colour"], actor=settings.actor)
        te = assets.register_dataset(s, path=test_path, name="arrests-test", target="y",
                                     sensitive=["colour"], actor=settings.actor)
        mv = assets.register_model(
            s, path=model_path, name="release-scorer", framework="sklearn", domain="general",
            trained_on=[tr.ref], owner="demo-team",
            intended_use="Recommend release or detention after an arrest (illustration)",
            actor=settings.actor,
        )
        ref, data_ref = mv.ref, te.ref
    ctx.refs.update(fairness_model=ref, fairness_data=data_ref)
    run = run_assessment(settings, model_ref=ref, data_ref=data_ref, suite="fairness",
                         options={"pos_label": "1"}, random_state=ctx.random_state)
    m = run["metrics"]
    yield "fairness", {
        "model": run["model"], "data": data_ref, "run": run["id"],
        "demographic_parity_difference": round(m["demographic_parity_difference"], 3),
        "demographic_parity_ratio": round(m["demographic_parity_ratio"], 3),
        "equalized_odds_difference": round(m["equalized_odds_difference"], 3),
        "worst_group": m["worst_group"],
        "severity": run["findings"][0]["severity"] if run["findings"] else "-",
        "by_group": m["by_group"],
    }


def _rank(sev: str) -> int:
    order = ["info", "low", "medium", "high", "critical"]
    return order.index(sev) if sev in order else -1
