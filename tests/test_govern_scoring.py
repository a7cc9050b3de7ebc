"""Risk scoring: likelihood bands, the 5×5 matrix, monotonicity, unknown never safe, residual."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from riskloop.findings import THREATS
from riskloop.govern import gates, policy, scoring
from riskloop.govern.readings import ars_at, fidelity_at
from tests.test_govern_support import evidence_set, facts

POL = policy.load(None).resolve(tier="minimal", domain="general")
RANK = {lv: i for i, lv in enumerate(scoring.LEVELS)}
DECISION_RANK = {gates.GO: 0, gates.NEEDS_APPROVAL: 1, gates.NO_GO: 2}


def test_bands_and_matrix_are_documented_step_functions():
    assert scoring.band("evasion_success", 0.0) == 1
    assert scoring.band("evasion_success", 0.15) == 2  # ARS exactly 0.85 passes the gate: L2
    assert scoring.band("evasion_success", 0.151) == 3
    assert scoring.band("evasion_success", 0.9) == 5
    assert scoring.band("membership_advantage", 0.10) == 3
    m = scoring.matrix()
    assert m[0][0] == "low" and m[4][4] == "critical" and m[2][2] == "medium" and m[3][3] == "high"
    for lk in range(5):
        for im in range(5):
            if lk < 4:
                assert RANK[m[lk + 1][im]] >= RANK[m[lk][im]]
            if im < 4:
                assert RANK[m[lk][im + 1]] >= RANK[m[lk][im]]


def test_nothing_measured_is_all_gaps_and_the_worst_likelihood():
    ra = scoring.assess(evidence_set({}), POL)
    applicable = [t for t in ra.threats if t.applicable]
    assert ra.assessed == 0 and ra.applicable == len(applicable) == len(THREATS) - 1
    assert all(t.level == "unknown" and t.likelihood is None for t in applicable)
    assert set(ra.gaps) == {t.threat_id for t in applicable}
    assert ra.score == 60  # impact 3 everywhere: L5 × I3 = 15 of 25
    assert ra.get("prompt-injection").level == "n/a"
    chat = scoring.assess(evidence_set({}, model=facts(domain="chatbot")), POL)
    assert chat.get("prompt-injection").level == "unknown"


def test_measured_evidence_sets_likelihood_impact_from_profile():
    ev = evidence_set({"evasion": {"ars": 0.5, "eps": 0.1}},
                      model=facts(impact={"confidentiality": 1, "integrity": 2, "availability_safety": 5}))
    t = scoring.assess(ev, POL).get("evasion")
    assert (t.likelihood, t.impact, t.level, t.run_id) == (4, 5, "critical", 100)


def test_findings_raise_likelihood_to_their_severity():
    ev = evidence_set({"privacy": {"inversion_gain": 0.5}}, findings={"privacy": [
        {"threat_id": "model-inversion", "severity": "high", "title": "reconstructs digits"}]})
    t = scoring.assess(ev, POL).get("model-inversion")
    assert t.likelihood == 4 and "reconstructs digits" in t.basis


def test_readings_are_conservative_between_measured_points():
    from riskloop.govern.evidence import RunEvidence

    run = RunEvidence(run_id=1, suite="evasion", metrics={
        "ars": 0.8, "eps": 0.1, "curve": [{"eps": 0.05, "robust_accuracy": 0.9},
                                          {"eps": 0.2, "robust_accuracy": 0.4}]})
    assert ars_at(run, None).value == 0.8
    assert ars_at(run, 0.05).value == 0.9
    assert ars_at(run, 0.07).value == 0.8  # read at eps 0.1, the next measured point up
    assert ars_at(run, 0.15).value == 0.4
    assert ars_at(run, 0.3).value is None and "up to eps 0.2" in ars_at(run, 0.3).note
    ext = RunEvidence(run_id=2, suite="extraction", metrics={"fidelity_curve": [
        {"budget": 100, "fidelity": 0.5}, {"budget": 1000, "fidelity": 0.8}],
        "fidelity_at_max_budget": 0.8})
    assert fidelity_at(ext, None).value == 0.8
    assert fidelity_at(ext, 500).value == 0.8  # upper bound: the next measured budget up
    assert fidelity_at(ext, 100).value == 0.5
    assert fidelity_at(ext, 5000).value is None


def test_worst_of_several_runs_counts():
    ev = evidence_set({"evasion": [{"ars": 0.95, "eps": 0.1}, {"ars": 0.6, "eps": 0.1}]})
    assert scoring.assess(ev, POL).get("evasion").likelihood == 4
    row = next(r for r in gates.decide(ev, POL).rules if r.id == "evasion.ars")
    assert row.status == "fail" and row.value == 0.6 and row.run_id == 99


def test_residual_risk_compares_with_the_parent():
    before = scoring.assess(evidence_set({"evasion": {"ars": 0.4, "eps": 0.1}}), POL)
    after = scoring.assess(evidence_set({"evasion": {"ars": 0.9, "eps": 0.1}}), POL)
    rows = {r["threat_id"]: r for r in scoring.compare(before, after)}
    assert rows["evasion"]["change"] == "lower" and rows["evasion"]["after"] == "medium"
    assert rows["backdoor"]["change"] == "unknown"
    assert after.score < before.score
    gone = scoring.assess(evidence_set({}), POL)
    assert {r["threat_id"]: r for r in scoring.compare(before, gone)}["evasion"]["change"] == "not re-assessed"


# --- properties: worse evidence never lowers a level; unknown is never safe ---------------

frac = st.floats(0.0, 1.0, allow_nan=False)


@st.composite
def measured(draw: st.DrawFn) -> tuple[dict, dict]:
    """A set of suite metrics and a version of it where every number is at least as bad."""
    better: dict = {}
    worse: dict = {}

    def pair(good_high: bool) -> tuple[float, float]:
        a, b = draw(frac), draw(frac)
        lo, hi = min(a, b), max(a, b)
        return (hi, lo) if good_high else (lo, hi)

    if draw(st.booleans()):
        g, w = pair(True)
        better["evasion"], worse["evasion"] = {"ars": g, "eps": 0.1}, {"ars": w, "eps": 0.1}
    if draw(st.booleans()):
        (ga, wa), (gt, wt) = pair(False), pair(False)
        better["privacy"] = {"membership_advantage": ga, "tpr_at_1pct_fpr": gt}
        worse["privacy"] = {"membership_advantage": wa, "tpr_at_1pct_fpr": wt}
    if draw(st.booleans()):
        g, w = pair(False)
        better["extraction"], worse["extraction"] = {"fidelity_at_max_budget": g}, {"fidelity_at_max_budget": w}
    if draw(st.booleans()):
        (gl, wl), (gb, wb) = pair(False), pair(False)
        better["integrity"] = {"label_issue_fraction": gl, "backdoor_flagged_fraction": gb}
        worse["integrity"] = {"label_issue_fraction": wl, "backdoor_flagged_fraction": wb}
    if draw(st.booleans()):
        (gd, wd), (ge, we) = pair(False), pair(False)
        better["fairness"] = {"demographic_parity_difference": gd, "equalized_odds_difference": ge}
        worse["fairness"] = {"demographic_parity_difference": wd, "equalized_odds_difference": we}
    if draw(st.booleans()):
        order = ["clean", "needs-trust", "malicious"]
        i, j = sorted([draw(st.integers(0, 2)), draw(st.integers(0, 2))])
        ci, cj = sorted([draw(st.integers(0, 3)), draw(st.integers(0, 3))])
        better["supply-chain"] = {"verdict": order[i], "critical": ci}
        worse["supply-chain"] = {"verdict": order[j], "critical": cj}
    return better, worse


impacts = st.fixed_dictionaries({k: st.integers(1, 5) for k in
                                 ("confidentiality", "integrity", "availability_safety")})


@settings(max_examples=200, deadline=None)
@given(measured(), impacts)
def test_worse_evidence_never_lowers_a_level_score_or_decision(pair, impact):
    better, worse = pair
    model = facts(impact=impact)
    b = scoring.assess(evidence_set(better, model=model), POL)
    w = scoring.assess(evidence_set(worse, model=model), POL)
    for tb, tw in zip(b.threats, w.threats, strict=True):
        assert (tb.likelihood is None) == (tw.likelihood is None)
        if tb.likelihood is not None:
            assert tw.likelihood >= tb.likelihood, (tb, tw)
            assert RANK[tw.level] >= RANK[tb.level]
    assert w.score >= b.score
    db = gates.decide(evidence_set(better, model=model), POL).decision
    dw = gates.decide(evidence_set(worse, model=model), POL).decision
    assert DECISION_RANK[dw] >= DECISION_RANK[db]


@settings(max_examples=200, deadline=None)
@given(measured(), impacts, st.sampled_from(["evasion", "privacy", "extraction", "integrity",
                                             "fairness", "supply-chain"]))
def test_unknown_never_scores_as_safe(pair, impact, drop):
    """Forgetting a suite's evidence never lowers any threat's product or the overall score,
    and never turns a NO-GO or NEEDS-APPROVAL into GO."""
    measured_suites, _ = pair
    model = facts(impact=impact)
    known = scoring.assess(evidence_set(measured_suites, model=model), POL)
    forgotten = {k: v for k, v in measured_suites.items() if k != drop}
    unknown = scoring.assess(evidence_set(forgotten, model=model), POL)
    for tk, tu in zip(known.threats, unknown.threats, strict=True):
        assert tu.product >= tk.product
        if tu.likelihood is None and tu.applicable:
            assert tu.level == "unknown" and tu.threat_id in unknown.gaps
    assert unknown.score >= known.score
    dk = gates.decide(evidence_set(measured_suites, model=model), POL).decision
    du = gates.decide(evidence_set(forgotten, model=model), POL).decision
    if drop in ("evasion", "supply-chain"):  # required by the default policy
        assert not (dk != gates.GO and du == gates.GO)


def test_governance_doc_matches_the_code():
    """docs/governance.md carries the taxonomy, the likelihood bands, the matrix and the
    policy defaults; a change in code without the doc fails here."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "governance.md").read_text()
    for t in THREATS.values():
        assert f"| `{t.id}` | {t.layer} | {t.name} |" in doc and ", ".join(t.atlas) in doc
    for name, (cuts, what) in scoring.BANDS.items():
        row = f"| `{name}` | {what} | " + " | ".join(f"≤ {c:g}" for c in cuts) + f" | > {cuts[-1]:g} |"
        assert row in doc, name
    for i, row in enumerate(scoring.matrix(), 1):
        assert f"| **{i}** | " + " | ".join(row) + " |" in doc
    for path, _leaf in policy.leaves(policy.SPEC):
        key = ".".join(path)
        if key not in ("version", "name"):
            assert f"| `{key}` |" in doc, key
    defaults = policy.defaults()
    assert f"| `rules.evasion.min_ars` | {defaults['rules']['evasion']['min_ars']:g} |" in doc
