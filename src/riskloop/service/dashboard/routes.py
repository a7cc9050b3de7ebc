"""The console's pages and form actions (server-rendered; charts drawn by local plotly.js).

Pages need a signed-in token with the ``read`` permission; without one they redirect to the
sign-in form. Form actions call the same library functions as the CLI, in one transaction,
with the token's owner as the actor: ``approve`` (``govern.approvals.approve``), ``revoke``
(``govern.approvals.revoke``), ``contain``
(``monitor.incidents.contain``), ``decide`` (``monitor.review.decide``). A refusal renders
one line with its status code (403 no permission or a cross-site form, 404, 409, 422).
"""

from __future__ import annotations

import hmac
import secrets
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from sqlalchemy.orm import Session, sessionmaker

from ...config import Settings
from ...errors import InputError, NotFoundError, RiskloopError
from ...govern import approvals
from ...govern import policy as policy_mod
from ...govern.reports import write_report
from ...inventory.refs import resolve_model
from ...monitor import incidents, review
from ...store.db import get_engine, transaction
from .. import tokens
from ..auth import COOKIE as TOKEN_COOKIE
from ..errors import status_of
from . import views, web
from .static import static_router

router = APIRouter(include_in_schema=False)
router.include_router(static_router)

Build = Callable[[Session, policy_mod.Policy, web.Visitor], dict[str, Any]]


def _settings(request: Request) -> Settings:
    return request.app.state.runtime.settings


def _show(request: Request, template: str, build: Build) -> Response:
    """Sign-in check, one read transaction, then the page (or a one-line refusal)."""
    try:
        who = web.visitor(request)
    except web.SignInRequired as exc:
        return web.to_signin(request, exc.message)
    settings = _settings(request)
    try:
        policy = policy_mod.load(workspace=settings.workspace)
        with transaction(settings) as session:
            data = build(session, policy, who)
    except RiskloopError as exc:
        return web.error_page(request, status_of(exc), str(exc), who)
    return web.page(request, template, who=who, **data)


async def _act(request: Request, permission: str,
               work: Callable[[Session, policy_mod.Policy, web.Visitor, dict[str, str]], str],
               back: str) -> Response:
    """Check sign-in, form token and role; run ``work`` in one transaction; redirect back."""
    try:
        who = web.visitor(request)
    except web.SignInRequired as exc:
        return web.to_signin(request, exc.message)
    try:
        form = await web.read_form(request)
        web.check_form(request, form, who, permission)
        settings = _settings(request)

        def unit() -> str:
            policy = policy_mod.load(workspace=settings.workspace)
            with transaction(settings) as session:
                return work(session, policy, who, form)

        message = await run_in_threadpool(unit)
    except RiskloopError as exc:
        return web.error_page(request, status_of(exc), str(exc), who)
    response = web.redirect(back)
    web.flash(response, request, "ok", message)
    return response


# -- sign-in ------------------------------------------------------------------------------


@router.get("/signin")
def signin_form(request: Request, next: str = "/") -> Response:
    nonce = secrets.token_hex(16)
    response = web.page(request, "signin.html", who=None, next=web.safe_next(next), nonce=nonce,
                        error=None)
    web.set_cookie(response, request, web.SIGNIN_COOKIE, nonce, max_age=3600)
    return response


@router.post("/signin")
async def signin(request: Request) -> Response:
    try:
        form = await web.read_form(request)
    except RiskloopError as exc:
        return web.error_page(request, status_of(exc), str(exc))
    target = web.safe_next(form.get("next"))
    sent, expected = form.get("signin", ""), request.cookies.get(web.SIGNIN_COOKIE, "")
    if not expected or not hmac.compare_digest(sent, expected):
        return web.error_page(request, 403, "the sign-in form is out of date or was not sent by "
                              "this console: open /signin again")
    token = form.get("token", "").strip()
    settings = _settings(request)

    def check() -> tuple[str, str] | None:
        with sessionmaker(bind=get_engine(settings))() as session, session.begin():
            rec = tokens.authenticate(session, token)
            return (rec.owner, rec.role) if rec is not None else None

    found = await run_in_threadpool(check) if token else None
    if found is None:
        nonce = secrets.token_hex(16)
        response = web.page(request, "signin.html", who=None, status=401, next=target, nonce=nonce,
                            error="that token is unknown or revoked: paste a token from "
                                  "'riskloop token create' or 'riskloop init'")
        web.set_cookie(response, request, web.SIGNIN_COOKIE, nonce, max_age=3600)
        return response
    response = web.redirect(target)
    web.set_cookie(response, request, TOKEN_COOKIE, token)
    web.set_cookie(response, request, web.SESSION_COOKIE, secrets.token_hex(16))
    web.clear_cookie(response, request, web.SIGNIN_COOKIE)
    web.flash(response, request, "ok", f"signed in as {found[0]} ({found[1]})")
    return response


@router.post("/signout")
async def signout(request: Request) -> Response:
    try:
        who = web.visitor(request)
        form = await web.read_form(request)
        web.check_form(request, form, who, "read")
    except web.SignInRequired:
        return web.redirect("/signin")
    except RiskloopError as exc:
        return web.error_page(request, status_of(exc), str(exc))
    response = web.redirect("/signin")
    for name in (TOKEN_COOKIE, web.SESSION_COOKIE):
        web.clear_cookie(response, request, name)
    return response


# -- pages --------------------------------------------------------------------------------


@router.get("/")
def overview(request: Request) -> Response:
    return _show(request, "overview.html", lambda s, p, w: views.overview(s, p))


@router.get("/inventory")
def inventory(request: Request) -> Response:
    return _show(request, "inventory.html", lambda s, p, w: views.inventory(s))


@router.get("/models/{ref}")
def model(request: Request, ref: str) -> Response:
    return _show(request, "model.html", lambda s, p, w: views.model_page(s, p, ref, owner=w.owner))


@router.get("/deployments")
def deployments(request: Request) -> Response:
    return _show(request, "deployments.html",
                 lambda s, p, w: {"deployments": views.deployments(s, p)})


@router.get("/incidents")
def incident_list(request: Request) -> Response:
    return _show(request, "incidents.html", lambda s, p, w: {"incidents": views.incident_list(s)})


def _id(raw: str, what: str) -> int:
    """A numeric id from the path; anything else is simply not found (an HTML page, not JSON)."""
    if not raw.isdigit() or len(raw) > 12:
        raise NotFoundError(f"unknown {what} '{raw[:40]}': ids are whole numbers")
    return int(raw)


@router.get("/incidents/{incident_id}")
def incident(request: Request, incident_id: str) -> Response:
    return _show(request, "incident.html",
                 lambda s, p, w: views.incident_page(s, _id(incident_id, "incident")))


@router.get("/review")
def review_queue(request: Request) -> Response:
    return _show(request, "review.html", lambda s, p, w: views.review_page(s))


@router.get("/models/{ref}/report.html")
def report_download(request: Request, ref: str) -> Response:
    """The offline HTML report, written by ``govern.reports.write_report`` (audited)."""
    try:
        who = web.visitor(request)
    except web.SignInRequired as exc:
        return web.to_signin(request, exc.message)
    settings = _settings(request)
    try:
        policy = policy_mod.load(workspace=settings.workspace)
        with tempfile.TemporaryDirectory(prefix="riskloop-console-") as tmp, \
                transaction(settings) as session:
            mv = resolve_model(session, ref)
            name = f"{mv.name}-v{mv.version}-report.html"
            out = write_report(session, actor=who.owner, mv=mv, policy=policy,
                               out=Path(tmp) / name, fmt="html")
            body = (Path(tmp) / name).read_bytes()
    except RiskloopError as exc:
        return web.error_page(request, status_of(exc), str(exc), who)
    return web.secure(Response(body, media_type="text/html; charset=utf-8", headers={
        "Content-Disposition": f'attachment; filename="{name}"', "X-Report-SHA256": out["sha256"]}))


# -- actions ------------------------------------------------------------------------------


@router.post("/models/{ref}/approve")
async def approve(request: Request, ref: str) -> Response:
    def work(session: Session, policy: policy_mod.Policy, who: web.Visitor, form: dict[str, str]) -> str:
        mv = resolve_model(session, ref)
        accept = form.get("kind") == "risk-acceptance"
        appr, after = approvals.approve(session, actor=who.owner, mv=mv, policy=policy,
                                        reason=form.get("reason", ""), accept_risk=accept)
        return f"recorded {appr.kind} #{appr.id} for {mv.ref} by {who.owner}; gate now {after.decision}"

    return await _act(request, "approve", work, f"/models/{ref}")


@router.post("/models/{ref}/approvals/{approval_id}/revoke")
async def revoke(request: Request, ref: str, approval_id: str) -> Response:
    def work(session: Session, policy: policy_mod.Policy, who: web.Visitor, form: dict[str, str]) -> str:
        mv = resolve_model(session, ref)
        appr, after = approvals.revoke(session, actor=who.owner, mv=mv, approval_id=_id(approval_id, "approval"),
                                       reason=form.get("reason", ""), policy=policy)
        return f"revoked {appr.kind} #{appr.id} of {mv.ref} by {who.owner}; gate now {after.decision}"

    return await _act(request, "approve", work, f"/models/{ref}")


@router.post("/incidents/{incident_id}/contain")
async def contain(request: Request, incident_id: str) -> Response:
    def work(session: Session, policy: policy_mod.Policy, who: web.Visitor, form: dict[str, str]) -> str:
        inc = incidents.contain(session, incidents.get_incident(session, _id(incident_id, "incident")),
                                actor=who.owner, mode=form.get("mode", "fallback"))
        return f"incident {inc.id} contained: deployment {inc.deployment.name} now in {inc.deployment.mode} mode"

    return await _act(request, "incident", work, f"/incidents/{incident_id}")


@router.post("/review/{item_id}/decide")
async def decide(request: Request, item_id: str) -> Response:
    def work(session: Session, policy: policy_mod.Policy, who: web.Visitor, form: dict[str, str]) -> str:
        label = form.get("label", "")
        if not label.strip():
            raise InputError("choose the correct label before deciding")
        item = review.decide(session, item_id=_id(item_id, "review item"), label=label, actor=who.owner,
                             note=form.get("note") or None)
        d = review.review_dict(item)
        verdict = "agrees with" if d["model_answer"] == d["label"] else "overrides"
        return f"review item {item_id} decided as '{d['label']}' ({verdict} the model's '{d['model_answer']}')"

    return await _act(request, "review", work, "/review")
