"""The console's web plumbing: sign-in cookies, form tokens, form bodies, pages, headers.

Sign-in stores the API token in the ``riskloop_token`` cookie (HttpOnly, SameSite=Strict;
Secure over HTTPS) and a random session nonce in ``riskloop_session``. Every form carries a
per-session token, ``HMAC-SHA256(api token, nonce)``, checked with a timing-safe comparison on
every state-changing request, together with the ``Origin`` header when the browser sends
one. A cross-site page can neither send the cookies (SameSite=Strict) nor compute the token
(it never sees the cookies), so it cannot act for a signed-in user. Signing in again starts a
new session and invalidates the old form tokens. Pages are served with a strict
Content-Security-Policy: scripts only from this server, no inline script.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from typing import Any
from urllib.parse import parse_qs, quote

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ...errors import InputError
from ..auth import COOKIE as TOKEN_COOKIE
from ..auth import Forbidden, Principal, authenticate, token_from
from ..errors import AuthError, BadRequest, PayloadTooLarge, UnsupportedMedia
from .static import url as static_url

SESSION_COOKIE = "riskloop_session"
SIGNIN_COOKIE = "riskloop_signin"
FLASH_COOKIE = "riskloop_flash"
MAX_FORM = 64 * 1024
ACTIONS = {"approve": "approve models", "incident": "contain or recover incidents",
           "review": "decide review items", "read": "read the console"}
CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'self'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # "no-referrer" would make browsers send Origin: null
    "Cache-Control": "no-store",
}

ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("riskloop.service.dashboard", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
ENV.globals["static"] = static_url


def kpi_value(value: float | None, unit: str) -> str:
    """An indicator as people read it: fractions in percent, hours with one decimal."""
    if value is None:
        return "no data"
    if unit == "fraction":
        return f"{value:.1%}"
    if unit == "hours":
        return f"{value:.1f} h"
    return f"{value:.3f} {unit}".strip()


def number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


ENV.filters["kpi"] = kpi_value
ENV.filters["num"] = number
ENV.filters["when"] = lambda ts: (str(ts)[:19].replace("T", " ") if ts else "-")
ENV.filters["cls"] = lambda s: "s-" + str(s).replace(" ", "")


class SignInRequired(Exception):
    """No usable token: the page answers with a redirect to the sign-in form."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


def csrf_token(token: str, nonce: str) -> str:
    return hmac.new(token.encode(), b"riskloop-console-form:" + nonce.encode(),
                    hashlib.sha256).hexdigest()


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def set_cookie(response: Response, request: Request, name: str, value: str, *,
               max_age: int | None = None) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="strict",
                        secure=_secure(request))


def clear_cookie(response: Response, request: Request, name: str) -> None:
    response.delete_cookie(name, path="/", httponly=True, samesite="strict",
                           secure=_secure(request))


def safe_next(value: str | None) -> str:
    """A local path to go to after sign-in (never another host)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 32 for c in value):
        return "/"
    return value


class Visitor:
    """The signed-in person of one request: who they are, their form token, what they may do."""

    def __init__(self, principal: Principal, csrf: str, new_nonce: str | None) -> None:
        self.principal = principal
        self.csrf = csrf
        self.new_nonce = new_nonce

    @property
    def owner(self) -> str:
        return self.principal.owner

    @property
    def role(self) -> str:
        return self.principal.role

    def can(self, permission: str) -> bool:
        return self.principal.can(permission)


def visitor(request: Request) -> Visitor:
    """The caller with ``read`` permission, or :class:`SignInRequired`."""
    try:
        who = authenticate(request)
    except AuthError as exc:
        raise SignInRequired(str(exc) if token_from(request) else "") from None
    token = token_from(request) or ""
    nonce = request.cookies.get(SESSION_COOKIE) or ""
    new_nonce = None
    if len(nonce) != 32:
        nonce = new_nonce = secrets.token_hex(16)
    return Visitor(who, csrf_token(token, nonce), new_nonce)


def check_form(request: Request, form: dict[str, str], who: Visitor, permission: str) -> None:
    """Refuse a state-changing request that is cross-site, lacks the form token or the role."""
    origin = request.headers.get("origin")
    if origin is not None:
        expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
        if origin != expected:
            raise Forbidden(f"the form was sent from {origin}, not from this console: "
                            "use the console's own pages")
    nonce = request.cookies.get(SESSION_COOKIE) or ""
    token = token_from(request) or ""
    sent = form.get("csrf", "")
    if not nonce or not sent or not hmac.compare_digest(sent, csrf_token(token, nonce)):
        raise Forbidden("the form is out of date or was not sent by this console: reload the "
                        "page and try again")
    if not who.can(permission):
        raise Forbidden(f"role '{who.role}' may not {ACTIONS.get(permission, permission)}: ask "
                        "an admin for a token with the right role")


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (first value of each field)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise UnsupportedMedia(f"Content-Type '{ctype or 'none'}' is not a form: send the "
                               "console's own form (application/x-www-form-urlencoded)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            raise PayloadTooLarge(f"the form is larger than {MAX_FORM} bytes: shorten the text")
    try:
        text = body.decode("utf-8")
        fields = parse_qs(text, keep_blank_values=True, max_num_fields=20, strict_parsing=False)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest(f"the form cannot be read ({exc}): send the console's own form") from None
    return {k: v[0] for k, v in fields.items()}


def form_int(form: dict[str, str], key: str) -> int:
    raw = form.get(key, "").strip()
    if not raw.isdigit():
        raise InputError(f"field '{key}' must be a whole number, got '{raw[:20]}'")
    return int(raw)


# -- flash messages (one line shown once after a redirect) ----------------------------------


def flash(response: Response, request: Request, kind: str, text: str) -> None:
    raw = json.dumps({"kind": kind, "text": text[:500]}).encode()
    set_cookie(response, request, FLASH_COOKIE, base64.urlsafe_b64encode(raw).decode(), max_age=60)


def take_flash(request: Request) -> dict[str, str] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(raw.encode()))
        return {"kind": str(data["kind"]), "text": str(data["text"])}
    except (ValueError, KeyError, TypeError):
        return None


# -- responses ----------------------------------------------------------------------------


def secure(response: Response) -> Response:
    for k, v in SECURITY_HEADERS.items():
        response.headers.setdefault(k, v)
    return response


def page(request: Request, template: str, *, who: Visitor | None, status: int = 200,
         **context: Any) -> HTMLResponse:
    """Render a page with the visitor, the flash message and the security headers."""
    note = take_flash(request)
    html = ENV.get_template(template).render(who=who, flash=note, path=request.url.path,
                                             **context)
    response = HTMLResponse(html, status_code=status)
    if note is not None:
        clear_cookie(response, request, FLASH_COOKIE)
    if who is not None and who.new_nonce:
        set_cookie(response, request, SESSION_COOKIE, who.new_nonce)
    return secure(response)


def error_page(request: Request, status: int, message: str, who: Visitor | None = None) -> HTMLResponse:
    return page(request, "error.html", who=who, status=status, message=message,
                title={401: "Sign-in needed", 403: "Not allowed", 404: "Not found",
                       409: "Not possible now"}.get(status, "Request refused"))


def redirect(url: str) -> RedirectResponse:
    return secure(RedirectResponse(url, status_code=303))  # type: ignore[return-value]


def to_signin(request: Request, message: str = "") -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = redirect(f"/signin?next={quote(safe_next(target), safe='')}")
    if message:
        clear_cookie(response, request, TOKEN_COOKIE)
        flash(response, request, "error", message)
    return response
