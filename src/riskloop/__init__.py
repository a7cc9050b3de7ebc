"""riskloop: the AI security risk-management loop for ML models (map, measure, manage, monitor)."""

from __future__ import annotations

__version__ = "0.1.0"

from .config import Settings, load_settings
from .errors import (
    ConflictError,
    InputError,
    IntegrityError,
    NotFoundError,
    PolicyViolation,
    RiskloopError,
    StoreError,
    UserError,
)
from .findings import THREATS, AssessmentResult, Finding, Severity, Threat

__all__ = [
    "AssessmentResult",
    "ConflictError",
    "Finding",
    "InputError",
    "IntegrityError",
    "NotFoundError",
    "PolicyViolation",
    "RiskloopError",
    "Settings",
    "Severity",
    "StoreError",
    "THREATS",
    "Threat",
    "UserError",
    "__version__",
    "load_settings",
]
