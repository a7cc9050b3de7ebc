"""The built-in mitigations by name (the ``METHOD`` of ``riskloop mitigate``)."""

from __future__ import annotations

from typing import Any

from ..errors import InputError
from .adversarial_training import AdversarialTraining
from .base import Mitigation
from .distillation import DefensiveDistillation
from .dp_training import DPTraining
from .feature_squeezing import FeatureSqueezing
from .sanitization import DataSanitization

MITIGATIONS: dict[str, type[Mitigation]] = {
    cls.name: cls
    for cls in (AdversarialTraining, DPTraining, DefensiveDistillation, FeatureSqueezing,
                DataSanitization)
}
# Short names the CLI accepts for convenience: adversarial training with a fixed method.
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "pgd": ("adversarial-training", {"method": "pgd"}),
    "trades": ("adversarial-training", {"method": "trades"}),
    "madry": ("adversarial-training", {"method": "pgd"}),
}


def method_names() -> list[str]:
    return [*MITIGATIONS, *ALIASES]


def create(name: str, **params: Any) -> Mitigation:
    """A configured mitigation; unknown names and options give one clear error."""
    extra: dict[str, Any] = {}
    if name in ALIASES:
        name, extra = ALIASES[name]
    cls = MITIGATIONS.get(name)
    if cls is None:
        raise InputError(f"unknown mitigation '{name}': choose one of {', '.join(method_names())}")
    try:
        return cls(**{**params, **extra})
    except TypeError as exc:
        raise InputError(f"mitigation '{name}': {exc}") from None
