"""``/api/v1`` MAP: the inventory, one model or dataset version, lineage, registration."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import Field

from ...errors import NotFoundError
from ...inventory import assets
from ...inventory.refs import resolve_dataset, resolve_model
from ..auth import Principal, require
from .common import Body, Name, Ref, RefPath, Text, in_workspace, jsonable, unit

router = APIRouter(tags=["inventory"])


class ModelIn(Body):
    path: Text = Field(description="Model file or folder, relative to the workspace.")
    name: Name
    framework: Annotated[str, Field(pattern=r"^(torch|sklearn|onnx)$")]
    domain: Name
    version: Annotated[int, Field(ge=1, le=10**9)] | None = None
    trained_on: Annotated[list[Ref], Field(max_length=20)] = []
    derived_from: Ref | None = None
    owner: Text | None = None
    intended_use: Text | None = None
    tier: Name | None = None
    tier_reason: Text | None = None


class DatasetIn(Body):
    path: Text = Field(description="CSV, Parquet or NPZ file, or a folder, relative to the workspace.")
    name: Name
    version: Annotated[int, Field(ge=1, le=10**9)] | None = None
    sensitive: Annotated[list[Name], Field(max_length=50)] = []
    target: Name | None = None


@router.get("/inventory")
def inventory(request: Request, who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """Every registered model and dataset version."""
    with unit(request, who) as (_s, session):
        return jsonable({"models": [assets.model_dict(m) for m in assets.list_models(session)],
                         "datasets": [assets.dataset_dict(d) for d in assets.list_datasets(session)]})


@router.get("/models/{ref}")
def model(ref: RefPath, request: Request, who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """One model version: digest, risk profile, lineage references, stage, scan and signature."""
    with unit(request, who) as (_s, session):
        return jsonable(assets.model_dict(resolve_model(session, ref)))


@router.get("/models/{ref}/lineage")
def lineage(ref: RefPath, request: Request, who: Principal = Depends(require("read"))) -> dict[str, Any]:
    """The model versions a model derives from and the datasets it was trained on."""
    with unit(request, who) as (_s, session):
        return jsonable(assets.lineage_tree(resolve_model(session, ref)))


@router.get("/datasets/{ref}")
def dataset(ref: RefPath, request: Request, who: Principal = Depends(require("read"))) -> dict[str, Any]:
    with unit(request, who) as (_s, session):
        try:
            return jsonable(assets.dataset_dict(resolve_dataset(session, ref)))
        except NotFoundError:
            raise NotFoundError(f"unknown dataset '{ref}': GET /api/v1/inventory lists them") from None


@router.post("/models", status_code=201)
def register_model(body: ModelIn, request: Request,
                   who: Principal = Depends(require("inventory:write"))) -> dict[str, Any]:
    """Register a model version (a path inside the workspace) with lineage and risk profile."""
    with unit(request, who) as (settings, session):
        mv = assets.register_model(
            session, path=in_workspace(settings, body.path, "model path"), name=body.name,
            framework=body.framework, domain=body.domain, version=body.version,
            trained_on=list(body.trained_on), derived_from=body.derived_from, owner=body.owner,
            intended_use=body.intended_use, tier=body.tier, tier_reason=body.tier_reason,
            actor=settings.actor)
        return jsonable(assets.model_dict(mv))


@router.post("/datasets", status_code=201)
def register_dataset(body: DatasetIn, request: Request,
                     who: Principal = Depends(require("inventory:write"))) -> dict[str, Any]:
    """Register a dataset version (a path inside the workspace)."""
    with unit(request, who) as (settings, session):
        ds = assets.register_dataset(
            session, path=in_workspace(settings, body.path, "dataset path"), name=body.name,
            version=body.version, sensitive=list(body.sensitive), target=body.target,
            actor=settings.actor)
        return jsonable(assets.dataset_dict(ds))
