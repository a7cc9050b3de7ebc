"""Integrity of the training data and the model: label issues, backdoors, trigger inputs.

::

    LabelIssueDetector     confident learning (cleanlab) on out-of-fold probabilities
    SpectralSignatures     backdoor rows from the top singular vector of activations (Tran et al. 2018)
    ActivationClustering   backdoor rows from 2-means clusters of activations (Chen et al. 2018)
    STRIP                  trigger inputs from prediction entropy under superimposition (Gao et al. 2019)
"""

from .backdoor import (
           ActivationClustering,
           SpectralSignatures,
           penultimate_activations,
           spectral_scores,
)
from .label_issues import LabelIssueDetector
from .strip import STRIP

__all__ = ["STRIP", "ActivationClustering", "LabelIssueDetector", "SpectralSignatures",
           "penultimate_activations", "spectral_scores"]
