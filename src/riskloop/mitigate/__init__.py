"""MANAGE (technical): mitigations that produce new, linked model versions.

Adversarial training (PGD, TRADES), DP-SGD, defensive distillation, feature squeezing and
data sanitization. Each takes a white-box torch model and training data and returns a new
model; :func:`~riskloop.mitigate.apply.apply_mitigation` stores it as a new version with
lineage and before / after assessments.
"""

from .adversarial_training import AdversarialTraining
from .base import DatasetChange, Mitigation, MitigationResult
from .distillation import DefensiveDistillation
from .dp_training import DPTraining
from .feature_squeezing import BitDepth, FeatureSqueezing, FeatureSqueezingDetector, MedianSmoothing
from .registry import MITIGATIONS, create
from .sanitization import DataSanitization

__all__ = [
    "AdversarialTraining",
    "BitDepth",
    "DPTraining",
    "DataSanitization",
    "DatasetChange",
    "DefensiveDistillation",
    "FeatureSqueezing",
    "FeatureSqueezingDetector",
    "MITIGATIONS",
    "MedianSmoothing",
    "Mitigation",
    "MitigationResult",
    "create",
]
