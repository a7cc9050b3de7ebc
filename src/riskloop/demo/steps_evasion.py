"""Demo step of MEASURE: the evasion suite on the digits CNN, stored as an assessment run.

The standard image set runs (PGD-10, APGD-CE, Square at 8/255; L-inf) on a seeded sample of
300 test images on one torch thread (a 60k-weight CNN on batches of a few hundred 8x8
images gains nothing from a second thread, and loses a lot when the machine is busy), so the
step takes seconds; the result is the Adversarial Robustness Score that the gate reads later.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch

from ..assess.suites import run_assessment

if TYPE_CHECKING:
    from .scenario import DemoContext

DEMO_POINTS = 300


def step_evasion(ctx: DemoContext) -> Iterator[tuple[str, dict[str, Any]]]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = run_assessment(
            ctx.settings, model_ref=ctx.refs["model"], data_ref=ctx.refs["test"], suite="evasion",
            limit=DEMO_POINTS, random_state=ctx.random_state,
        )
    finally:
        torch.set_num_threads(threads)
    m = run["metrics"]
    ctx.refs["evasion_run"] = str(run["id"])
    yield "evasion", {
        "model": run["model"], "run": run["id"], "points": m["points"],
        "clean_accuracy": round(m["clean_accuracy"], 4), "eps": round(m["eps"], 5),
        "ARS": round(m["ars"], 4), "trustworthy": run["trustworthy"],
        "proved_robust": next((round(p["verified_accuracy"], 4) for p in m["curve"]
                               if p["eps"] == m["eps"] and p.get("verified_accuracy") is not None), None),
        "severity": run["findings"][0]["severity"] if run["findings"] else "-",
        "curve": m["curve"], "warnings": run["warnings"],
    }
