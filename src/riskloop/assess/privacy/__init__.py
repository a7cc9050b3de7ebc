"""Confidentiality attacks on a model: membership inference and model inversion.

::

    LossThresholdMIA      black-box, loss of the true label (Yeom et al. 2018)
    ReferenceModelMIA     black-box, offline reference models: RMIA and offline LiRA
    MIFace                white-box, gradient-based class reconstruction (Fredrikson et al. 2015)
    roc_summary           AUC, advantage, TPR at 1% / 0.1% FPR with the 1/n floor, log-scale ROC
"""

from .inversion import MIFace
from .membership import LossThresholdMIA, ReferenceModelMIA, combine, level_key, roc_summary

__all__ = ["LossThresholdMIA", "MIFace", "ReferenceModelMIA", "combine", "level_key", "roc_summary"]
