"""MEASURE: evasion (adversarial examples), paper 3.2.1 and Table 2; the ARS of Table 4.

White-box attacks (need a :class:`~riskloop.targets.WhiteBoxTarget`): :class:`FGSM`,
:class:`PGD`, :class:`APGD` (APGD-CE). Black-box: :class:`SquareAttack` (scores),
:class:`HopSkipJump` (labels only). :class:`RobustnessEvaluation` runs an ensemble over an
eps list with early exit and self-checks; :func:`evaluate_evasion` adds the standard set
and the ARS findings.
"""

from .apgd import APGD
from .base import AttackOutcome, EvasionAttack, perturbation_norm
from .evaluate import RobustnessEvaluation, feature_scale
from .gradient import FGSM, PGD
from .hsj import HopSkipJump
from .square import SquareAttack
from .suite import ATTACKS, STANDARD, evaluate_evasion, findings_for, severity_for_ars

__all__ = [
    "APGD",
    "ATTACKS",
    "FGSM",
    "PGD",
    "STANDARD",
    "AttackOutcome",
    "EvasionAttack",
    "HopSkipJump",
    "RobustnessEvaluation",
    "SquareAttack",
    "evaluate_evasion",
    "feature_scale",
    "findings_for",
    "perturbation_norm",
    "severity_for_ars",
]
