"""Reading request bodies: size limit, content type and strict JSON (no NaN or Infinity)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request

from ..errors import InputError
from .errors import BadRequest, PayloadTooLarge, UnsupportedMedia


def _no_constants(name: str) -> Any:
    raise InputError(
        f"the body holds {name}, which is not a JSON number: send finite numbers only"
    )


async def read_json(request: Request, *, limit: int) -> dict[str, Any]:
    """The body as a JSON object, or a one-line refusal (400, 413, 415, 422)."""
    ctype = request.headers.get("content-type", "")
    if ctype and "json" not in ctype.split(";")[0].lower():
        raise UnsupportedMedia(f"Content-Type '{ctype}' is not JSON: send application/json")
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise BadRequest(f"Content-Length '{length}' is not a number") from None
        if declared > limit:
            raise PayloadTooLarge(f"the body has {declared} bytes, more than the limit of {limit}: "
                                  "send fewer rows per request")
    if length is not None:  # declared and within the limit; the server holds it to it
        body = await request.body()
    else:
        chunks = bytearray()
        async for chunk in request.stream():
            chunks += chunk
            if len(chunks) > limit:
                raise PayloadTooLarge(f"the body is larger than the limit of {limit} bytes: "
                                      "send fewer rows per request")
        body = bytes(chunks)
    if not body:
        raise BadRequest("the body is empty: send a JSON object such as {\"inputs\": [[...]]}")
    try:
        data = json.loads(body, parse_constant=_no_constants)
    except InputError:
        raise
    except (ValueError, RecursionError) as exc:
        raise BadRequest(f"the body is not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise BadRequest(f"the body must be a JSON object, got a JSON {type(data).__name__}")
    return data


def request_id(body: dict[str, Any], default: str) -> str:
    rid = body.get("request_id", default)
    if not isinstance(rid, str) or not 0 < len(rid) <= 64 or not rid.isprintable():
        raise InputError("'request_id' must be text of 1 to 64 printable characters")
    return rid


def check_keys(body: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InputError(f"unknown field(s) {unknown}: the body may hold {', '.join(allowed)}")
