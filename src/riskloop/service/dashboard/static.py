"""Static files of the console: plotly.js from the installed ``plotly`` package, CSS and JS.

plotly.js is the offline bundle that ships inside the Python package
(``plotly.offline.get_plotlyjs()``), served from this server: no page ever asks a CDN. Files
are addressed by a digest of their content, so they can be cached for a year; plotly.js is
sent gzip-compressed to browsers that accept it (1.47 MB instead of 4.8 MB for plotly 7.1).
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

static_router = APIRouter(include_in_schema=False)

TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class Asset:
    name: str  # e.g. plotly-1a2b3c4d5e6f.js
    body: bytes
    gzipped: bytes
    media_type: str


def _asset(stem: str, ext: str, body: bytes) -> Asset:
    digest = hashlib.sha256(body).hexdigest()[:12]
    return Asset(f"{stem}-{digest}.{ext}", body, gzip.compress(body, 6, mtime=0), TYPES[ext])


@cache
def assets() -> dict[str, Asset]:
    """Every static file by its stem (``plotly``, ``console``, ``style``)."""
    from plotly.offline import get_plotlyjs

    files = resources.files("riskloop.service.dashboard") / "static"
    out = {"plotly": _asset("plotly", "js", get_plotlyjs().encode("utf-8"))}
    for stem, ext in (("console", "js"), ("style", "css")):
        out[stem] = _asset(stem, ext, (files / f"{stem}.{ext}").read_bytes())
    return out


def url(stem: str) -> str:
    return f"/static/{assets()[stem].name}"


@static_router.get("/static/{name}")
def static_file(request: Request, name: str) -> Response:
    found = next((a for a in assets().values() if a.name == name), None)
    if found is None:
        return Response("not found\n", status_code=404, media_type="text/plain")
    headers = {"Cache-Control": "public, max-age=31536000, immutable",
               "X-Content-Type-Options": "nosniff", "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", "").lower():
        headers["Content-Encoding"] = "gzip"
        return Response(found.gzipped, media_type=found.media_type, headers=headers)
    return Response(found.body, media_type=found.media_type, headers=headers)
