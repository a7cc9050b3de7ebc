"""Plug-in points for evidence that later loop steps produce (monitoring, incidents).

The Monitor step comes after Manage in the loop, so ``govern`` never imports it. Instead,
modules listed in :data:`PROVIDER_MODULES` (when installed) are imported before KPIs or
compliance maps are computed; they call :func:`riskloop.govern.kpi.register_kpi` or
:func:`register_evidence` to replace the "no data" placeholders. Each plug-in is one function.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

from sqlalchemy.orm import Session

from ..store.models import ModelVersion

log = logging.getLogger(__name__)

PROVIDER_MODULES: list[str] = ["riskloop.monitor.govern_hooks"]

# kind -> fn(session, model) -> a one-line description of the evidence, or None when there is none
EvidenceProvider = Callable[[Session, ModelVersion], str | None]
EVIDENCE_KINDS = ("monitoring", "fallback", "incidents", "defence_fpr")
_EVIDENCE: dict[str, EvidenceProvider] = {}
_loaded = False


def register_evidence(kind: str, fn: EvidenceProvider) -> None:
    """Register the function that finds one kind of runtime evidence for a model version."""
    if kind not in EVIDENCE_KINDS:
        raise ValueError(f"unknown evidence kind '{kind}': one of {', '.join(EVIDENCE_KINDS)}")
    _EVIDENCE[kind] = fn


def runtime_evidence(session: Session, mv: ModelVersion) -> dict[str, str | None]:
    load_providers()
    return {kind: (_EVIDENCE[kind](session, mv) if kind in _EVIDENCE else None)
            for kind in EVIDENCE_KINDS}


def load_providers() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for name in PROVIDER_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                log.debug("no provider module %s", name)
                continue
            raise
