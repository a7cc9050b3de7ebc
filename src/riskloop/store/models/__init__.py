"""The relational schema of the store (SQLAlchemy 2 declarative), one module per loop step.

Alembic migrations in ``migrations/versions`` create exactly these tables; a test checks that
the migrated schema and these modules agree. Importing this package registers every table on
:class:`Base` (the relationships between modules resolve by class name).
"""

from .assessments import AssessmentRun, FindingRecord
from .audit_log import AuditEvent, AuditHead
from .base import Base, utcnow
from .governance import Approval, GateDecision, PolicyRecord, StageChange
from .incidents import Incident, IncidentSignal, IncidentTransition
from .inventory import DatasetVersion, ModelVersion, Signature, TrainingEdge
from .monitoring import Alert, ClientKey, Deployment, PredictionLog, ReviewItem, WatchState
from .tokens import ApiToken

__all__ = [
    "Base",
    "utcnow",
    "DatasetVersion",
    "ModelVersion",
    "TrainingEdge",
    "Signature",
    "AssessmentRun",
    "FindingRecord",
    "AuditEvent",
    "AuditHead",
    "PolicyRecord",
    "GateDecision",
    "Approval",
    "StageChange",
    "Deployment",
    "ClientKey",
    "PredictionLog",
    "Alert",
    "ReviewItem",
    "WatchState",
    "Incident",
    "IncidentTransition",
    "IncidentSignal",
    "ApiToken",
]
