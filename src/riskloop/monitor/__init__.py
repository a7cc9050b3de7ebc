"""MONITOR: drift against frozen reference profiles and watchdogs beside the model.

Paper 5.1(4), 5.2.1 and 2.3.3. Everything here is a pure library component: no database
tables, state as JSON (``to_dict`` / ``from_dict``), so a gateway or a batch job can store
and reload it.
"""

from __future__ import annotations

from .drift import DEFAULT_THRESHOLDS, DataDrift, DriftReport, FeatureDrift
from .outcomes import (
    PerformanceDrift,
    PerformanceDriftResult,
    prediction_drift,
    prediction_frame,
    prediction_profile,
)
from .profile import CategoricalProfile, NumericProfile, ReferenceProfile
from .query_watch import QueryPatternWatchdog
from .tables import as_frame, read_table
from .watchdogs import (
    AdversarialDetectorWatchdog,
    Alert,
    ConfidenceSpikeWatchdog,
    InputOutlierWatchdog,
    Watchdog,
    ledoit_wolf,
)

__all__ = [
    "DEFAULT_THRESHOLDS",
    "AdversarialDetectorWatchdog",
    "Alert",
    "CategoricalProfile",
    "ConfidenceSpikeWatchdog",
    "DataDrift",
    "DriftReport",
    "FeatureDrift",
    "InputOutlierWatchdog",
    "NumericProfile",
    "PerformanceDrift",
    "PerformanceDriftResult",
    "QueryPatternWatchdog",
    "ReferenceProfile",
    "Watchdog",
    "as_frame",
    "ledoit_wolf",
    "prediction_drift",
    "prediction_frame",
    "prediction_profile",
    "read_table",
]
