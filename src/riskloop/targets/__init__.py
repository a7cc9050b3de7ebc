"""The model under test: specs, safe loading and target adapters.

::

    Target (protocol)         predict_proba(X) -> (n, k), classes, input_spec, access, queries
    └── WhiteBoxTarget        + logits(x_tensor), input_gradient(X, y), attack_mode()

    TorchTarget               white-box, an nn.Module (Normalize layer inside the model)
    MockTarget                white-box linear model with switchable defects, for tests
    SklearnTarget             black-box (label-only without predict_proba)
    OnnxTarget                black-box, onnxruntime
    HttpTarget                black-box JSON API with query budget, timeout and retries

    load_target(session, settings, model_version, trust=False)   the one safe loader
    check_loadable(model_version, trust)                         the policy it applies
    load_arrays(dataset_version)                                 (X, y) of a dataset
"""

from .base import (
    ACCESS_BLACK,
    ACCESS_LABEL,
    ACCESS_WHITE,
    InputSpec,
    QueryBudgetExceeded,
    Target,
    WhiteBoxTarget,
    check_data,
    encode_labels,
    is_white_box,
    predict,
)
from .http_target import HttpTarget
from .loader import check_loadable, load_arrays, load_target
from .mock import MockTarget
from .sklearn_target import OnnxTarget, SklearnTarget
from .torch_target import TorchTarget

__all__ = [
    "ACCESS_BLACK",
    "ACCESS_LABEL",
    "ACCESS_WHITE",
    "HttpTarget",
    "InputSpec",
    "MockTarget",
    "OnnxTarget",
    "QueryBudgetExceeded",
    "SklearnTarget",
    "Target",
    "TorchTarget",
    "WhiteBoxTarget",
    "check_data",
    "check_loadable",
    "encode_labels",
    "is_white_box",
    "load_arrays",
    "load_target",
    "predict",
]
