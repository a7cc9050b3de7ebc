"""SERVICE: the FastAPI app (guarded inference gateway, metrics, health)."""

from __future__ import annotations

from .app import create_app
from .runtime import GatewayOptions

__all__ = ["GatewayOptions", "create_app"]
