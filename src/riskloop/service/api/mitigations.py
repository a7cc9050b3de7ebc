"""``/api/v1`` MANAGE: apply a mitigation (engineers), synchronously and bounded.

The same path as ``riskloop mitigate``: the method's options are checked by the CLI's own
rules (an option the method does not take is refused, 422), ``mitigate.apply.apply_mitigation``
trains or calibrates the new version, registers it with lineage, re-runs the targeted suites on
a seeded sample of at most :data:`MAX_ROWS` test rows and answers the before / after report.
Training is bounded to :data:`MAX_EPOCHS` epochs per request.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from ...cli.mitigate_cmd import _params as method_params
from ...errors import InputError
from ...mitigate.apply import apply_mitigation
from ..auth import Principal, require
from .common import Body, Name, Ref, acting, jsonable

router = APIRouter(tags=["mitigations"])
MAX_ROWS = 500
MAX_EPOCHS = 50
Value = float | int | Annotated[str, Field(max_length=100, pattern=r"^[^\x00]*$")] | list[int]


class MitigationIn(Body):
    model: Ref
    method: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,40}$")]
    data: Ref
    test: Ref | None = None
    params: Annotated[dict[Name, Value], Field(max_length=20)] = {}
    limit: Annotated[int, Field(ge=1, le=MAX_ROWS)] = 200
    reassess: bool = True
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


@router.post("/mitigations", status_code=201)
def mitigate(body: MitigationIn, request: Request,
             who: Principal = Depends(require("mitigate"))) -> dict[str, Any]:
    """Mitigate a model version into a new, registered one and compare before / after."""
    params = method_params(body.method, dict(body.params), None)
    epochs = params.get("epochs")
    if isinstance(epochs, int | float) and not 1 <= epochs <= MAX_EPOCHS:
        raise InputError(f"params.epochs {epochs}: the API trains 1 to {MAX_EPOCHS} epochs "
                         "per request (use 'riskloop mitigate' for longer training)")
    report = apply_mitigation(acting(request, who), model=body.model, method=body.method,
                              data=body.data, test=body.test, params=params, limit=body.limit,
                              random_state=body.seed, reassess=body.reassess)
    return jsonable(report.as_dict())
