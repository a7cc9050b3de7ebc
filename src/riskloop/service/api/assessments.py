"""``/api/v1`` MEASURE: stored runs and findings, and starting an assessment.

``POST /api/v1/assessments`` runs the suite **synchronously** within the request, on a seeded
sample of at most :data:`MAX_ROWS` rows, through the same ``suites.run_assessment`` as
``riskloop assess``: the response is the stored run. Bounded work keeps a request's duration
bounded without a job queue; larger assessments belong to the CLI (``--executor ray``).
Black-box endpoints and ``--trust`` (loading an unscanned pickle) are CLI-only.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field

from ...assess import suites
from ...assess.runs import run_dict, runs_for
from ...inventory.refs import resolve_model
from ..auth import Principal, require
from .common import Body, Name, Ref, RefPath, Text, acting, jsonable, unit

router = APIRouter(tags=["assessments"])
MAX_ROWS = 500
Option = Annotated[str, Field(max_length=200, pattern=r"^[^\x00]*$")]


class AssessmentIn(Body):
    model: Ref
    data: Ref
    suite: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,40}$")] = "evasion"
    eps: Annotated[list[Annotated[float, Field(gt=0, le=1e6)]], Field(max_length=20)] | None = None
    standard_eps: Annotated[float, Field(gt=0, le=1e6)] | None = None
    attacks: Annotated[list[Name], Field(max_length=10)] | None = None
    options: Annotated[dict[Name, Option], Field(max_length=30)] = {}
    limit: Annotated[int, Field(ge=1, le=MAX_ROWS)] = 200
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


@router.get("/models/{ref}/runs")
def runs(ref: RefPath, request: Request,
         suite: Annotated[Text | None, Query(max_length=40)] = None,
         who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """Every stored assessment run of a model version, with its findings."""
    with unit(request, who) as (_s, session):
        mv = resolve_model(session, ref)
        out = [run_dict(r) for r in runs_for(session, mv, suite)]
        return jsonable({"model": mv.ref, "runs": out})


@router.get("/models/{ref}/findings")
def findings(ref: RefPath, request: Request,
             who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """The findings of every run of a model version, flat, newest run first."""
    with unit(request, who) as (_s, session):
        mv = resolve_model(session, ref)
        rows = [{**f, "run": r["id"], "suite": r["suite"], "trustworthy": r["trustworthy"]}
                for r in (run_dict(x) for x in runs_for(session, mv, None)) for f in r["findings"]]
        rows.sort(key=lambda f: -f["run"])
        return jsonable({"model": mv.ref, "findings": rows})


@router.post("/assessments", status_code=201)
def assess(body: AssessmentIn, request: Request,
           who: Principal = Depends(require("assess"))) -> dict[str, Any]:
    """Run a suite on a registered model and dataset (bounded sample) and store the run."""
    options: dict[str, Any] = dict(body.options)
    if body.eps:
        options["eps"] = list(body.eps)
    if body.standard_eps:
        options["standard_eps"] = body.standard_eps
    if body.attacks:
        options["attacks"] = list(body.attacks)
    suites.get_suite(body.suite)
    out = suites.run_assessment(acting(request, who), model_ref=body.model, data_ref=body.data,
                                suite=body.suite, options=options, limit=body.limit,
                                random_state=body.seed)
    return jsonable(out)
