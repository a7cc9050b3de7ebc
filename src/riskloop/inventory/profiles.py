"""Risk profiles: what a model's application domain means for its security properties.

Impact levels run 1 (negligible) to 5 (severe) for confidentiality (C), integrity (I) and
availability/safety (A). The EU AI Act tier is the default reading of the domain; a user who
knows better overrides it with ``--tier`` and a recorded justification. The table and its
reasons are documented in ``docs/risk-profiles.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError

DOMAINS = (
    "finance",
    "healthcare",
    "autonomous",
    "biometric",
    "employment",
    "critical-infrastructure",
    "chatbot",
    "general",
)
TIERS = ("prohibited", "high", "limited", "minimal")


@dataclass(frozen=True)
class RiskProfile:
    domain: str
    confidentiality: int
    integrity: int
    availability_safety: int
    tier: str
    tier_reason: str

    @property
    def impact(self) -> dict[str, int]:
        return {
            "confidentiality": self.confidentiality,
            "integrity": self.integrity,
            "availability_safety": self.availability_safety,
        }


_TABLE: dict[str, RiskProfile] = {
    "finance": RiskProfile(
        "finance", 4, 5, 3, "high",
        "EU AI Act Annex III 5(b): creditworthiness and credit scoring of natural persons; "
        "fraud decisions move money (integrity 5), customer records are confidential",
    ),
    "healthcare": RiskProfile(
        "healthcare", 5, 5, 5, "high",
        "EU AI Act Art. 6(1) + Annex I (medical devices, MDR/IVDR) and Annex III 5(a); "
        "health data is a special category (GDPR Art. 9), wrong outputs harm patients",
    ),
    "autonomous": RiskProfile(
        "autonomous", 2, 5, 5, "high",
        "EU AI Act Art. 6(1) + Annex I: safety components of vehicles and machinery; "
        "an evaded perception model is a physical safety hazard (paper 6.1.3)",
    ),
    "biometric": RiskProfile(
        "biometric", 5, 4, 3, "high",
        "EU AI Act Annex III 1: remote biometric identification and categorisation; "
        "biometric templates cannot be revoked once leaked",
    ),
    "employment": RiskProfile(
        "employment", 4, 4, 2, "high",
        "EU AI Act Annex III 4: recruitment, promotion and termination decisions; "
        "bias is a legal risk and applicant data is personal data",
    ),
    "critical-infrastructure": RiskProfile(
        "critical-infrastructure", 3, 5, 5, "high",
        "EU AI Act Annex III 2: safety components in the management of critical digital "
        "infrastructure, road traffic, water, gas, heating and electricity",
    ),
    "chatbot": RiskProfile(
        "chatbot", 3, 3, 2, "limited",
        "EU AI Act Art. 50: systems interacting with people carry transparency obligations; "
        "prompt injection and leakage of conversation data are the main risks",
    ),
    "general": RiskProfile(
        "general", 2, 2, 2, "minimal",
        "No Annex III use case named: minimal-risk tier (voluntary codes of conduct, Art. 95)",
    ),
}


def profile_for(domain: str, *, tier: str | None = None, justification: str | None = None) -> RiskProfile:
    """The risk profile of a domain, with an optional recorded tier override."""
    if domain not in _TABLE:
        raise InputError(
            f"unknown domain '{domain}': choose one of {', '.join(DOMAINS)}"
        )
    base = _TABLE[domain]
    if tier is None:
        return base
    if tier not in TIERS:
        raise InputError(f"unknown tier '{tier}': choose one of {', '.join(TIERS)}")
    if not justification or not justification.strip():
        raise InputError("--tier needs --tier-reason: record why the default tier does not apply")
    return RiskProfile(
        base.domain, base.confidentiality, base.integrity, base.availability_safety, tier,
        f"override of '{base.tier}' by the registrant: {justification.strip()}",
    )


def profile_table() -> list[RiskProfile]:
    return [_TABLE[d] for d in DOMAINS]
