"""Findings, severities and the threat taxonomy every finding refers to.

The taxonomy is the paper's Table 2 (three layers: data, model, system) plus membership
inference, backdoors and prompt injection. Each threat maps to MITRE ATLAS technique ids and
to the attack classes named in EU AI Act Article 15(5): "data poisoning", "model poisoning",
"adversarial examples or model evasion", "confidentiality attacks" and "model flaws".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return list(Severity).index(self)


@dataclass(frozen=True)
class Threat:
    id: str
    name: str
    layer: str  # data | model | system
    mechanism: str
    impact: str
    security_property: str  # confidentiality | integrity | availability_safety
    atlas: tuple[str, ...]
    eu_ai_act_15_5: tuple[str, ...]
    paper: str


ART15_DATA_POISONING = "data poisoning"
ART15_MODEL_POISONING = "model poisoning"
ART15_EVASION = "adversarial examples or model evasion"
ART15_CONFIDENTIALITY = "confidentiality attacks"
ART15_MODEL_FLAWS = "model flaws"

THREATS: dict[str, Threat] = {
    t.id: t
    for t in [
        Threat("data-poisoning", "Data poisoning", "data",
               "Injecting malicious samples or altering labels during the training phase.",
               "Integrity loss: backdoors or blind spots", "integrity",
               ("AML.T0020",), (ART15_DATA_POISONING,), "3.1.1, Table 2"),
        Threat("bias-injection", "Bias injection", "data",
               "Training on unrepresentative or historically prejudiced data.",
               "Reliability loss: discriminatory outcomes, regulatory penalties", "integrity",
               ("AML.T0020",), (ART15_DATA_POISONING, ART15_MODEL_FLAWS), "3.1.3, Table 2"),
        Threat("evasion", "Evasion attack (adversarial examples)", "model",
               "Adding imperceptible noise to inputs at inference to fool the model.",
               "Safety hazard: wrong decisions on manipulated inputs", "availability_safety",
               ("AML.T0015", "AML.T0043"), (ART15_EVASION,), "3.2.1, Table 2"),
        Threat("model-inversion", "Model inversion", "model",
               "Analysing model outputs to reconstruct representative training inputs.",
               "Privacy breach: exposure of sensitive training data", "confidentiality",
               ("AML.T0024.001",), (ART15_CONFIDENTIALITY,), "3.2.2, Table 2"),
        Threat("membership-inference", "Membership inference", "model",
               "Deciding from outputs whether a record was part of the training set.",
               "Privacy breach: membership itself reveals sensitive facts", "confidentiality",
               ("AML.T0024.000",), (ART15_CONFIDENTIALITY,), "3.2.2"),
        Threat("model-extraction", "Model extraction", "model",
               "Querying the API extensively to train a replica model.",
               "IP theft and a white-box copy for further attacks", "confidentiality",
               ("AML.T0024.002",), (ART15_CONFIDENTIALITY,), "3.2.2, Table 2"),
        Threat("backdoor", "Backdoor (trojan trigger)", "model",
               "A trigger pattern planted through poisoned training data or a tampered model.",
               "Integrity loss: attacker-chosen output on triggered inputs", "integrity",
               ("AML.T0018", "AML.T0020"), (ART15_DATA_POISONING, ART15_MODEL_POISONING),
               "3.1.1, 3.3.1"),
        Threat("supply-chain", "Supply-chain compromise", "system",
               "Embedding malware in pre-trained models or open-source libraries.",
               "System compromise: remote code execution", "integrity",
               ("AML.T0010", "AML.T0011"), (ART15_MODEL_POISONING,), "3.3.1, Table 2"),
        Threat("prompt-injection", "Prompt injection", "model",
               "Instructions hidden in inputs that override a language model's task.",
               "Integrity loss and data leakage through the model's tools", "integrity",
               ("AML.T0051",), (ART15_EVASION,), "6.2"),
        Threat("automation-bias", "Automation bias", "system",
               "Operators over-relying on incorrect AI suggestions without verification.",
               "Operational failure: a human fails to intervene", "availability_safety",
               ("AML.T0048",), (ART15_MODEL_FLAWS,), "3.3.2, Table 2"),
    ]
}


def threat(threat_id: str) -> Threat:
    try:
        return THREATS[threat_id]
    except KeyError:
        raise KeyError(f"unknown threat id '{threat_id}': one of {', '.join(THREATS)}") from None


@dataclass
class Finding:
    """One observation of an assessment, tied to a threat, with its evidence."""

    threat_id: str
    severity: Severity
    title: str
    detail: str = ""
    metric: str | None = None
    value: float | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        threat(self.threat_id)
        self.severity = Severity(self.severity)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["severity"] = str(self.severity)
        return d


@dataclass
class AssessmentResult:
    """What an assessment component returns: metrics, findings, artifacts and warnings.

    ``trustworthy`` is False when the run found reasons to doubt its own numbers (for
    example signs of gradient masking); a gate does not count such a run as evidence.
    """

    suite: str
    metrics: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    artifacts: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    trustworthy: bool = True
