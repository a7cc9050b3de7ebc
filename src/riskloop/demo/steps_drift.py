"""Demo MONITOR step: drift of the test traffic, clean and then degraded, against the frozen
profile of the training data (paper 5.1(4): "a subtle shift in input statistics")."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..monitor import DataDrift, ReferenceProfile

if TYPE_CHECKING:  # scenario imports this module
    from .scenario import DemoContext


def step_drift(ctx: DemoContext) -> Iterator[tuple[str, dict[str, Any]]]:
    X_train, X_test = ctx.data["X_train"], ctx.data["X_test"]
    profile = ReferenceProfile.fit({"X": X_train}, source={"dataset": ctx.refs.get("train")})
    ctx.data["reference_profile"] = profile
    clean = DataDrift(stat="psi").run(profile, {"X": X_test})
    rng = np.random.default_rng(ctx.random_state)
    # a scanner ageing in the field: brighter background plus sensor noise
    degraded = np.clip(X_test + 0.1 + rng.normal(0, 0.1, X_test.shape), 0, 1)
    shifted = DataDrift(stat="psi").run(profile, {"X": degraded.astype(np.float32)})
    yield "drift", {
        "reference": ctx.refs.get("train"), "features": len(profile.columns),
        "clean_drifted": len(clean.drifted), "clean_dataset_drift": clean.dataset_drift,
        "degraded_drifted": len(shifted.drifted),
        "degraded_dataset_drift": shifted.dataset_drift,
        "max_psi": round(max(f.psi or 0.0 for f in shifted.features), 3),
    }
