"""Policy as code: defaults, validation messages (file, line, key), overrides, round trips."""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskloop.govern import policy as P
from riskloop.inventory.profiles import DOMAINS, TIERS


def test_default_file_is_complete_and_commented(tmp_path):
    text = P.default_text()
    data, lines = P.parse_text(text, where="default", defaults=None)
    assert data == P.defaults()
    assert data["rules"]["evasion"]["min_ars"] == 0.85  # paper Table 4
    assert data["rules"]["supply_chain"]["max_critical"] == 0
    assert data["overrides"]["tiers"]["high"]["approval"]["required"] is True
    assert data["overrides"]["tiers"]["high"]["rules"]["signature"]["required"] is True
    # Every threshold has a comment somewhere above it in its section.
    assert text.count("#") > 40
    for path, _leaf in P.leaves(P.SPEC):
        assert ".".join(path) in lines


def test_init_writes_the_commented_default_and_it_validates(sqlite_workspace):
    ws = sqlite_workspace
    res = ws.invoke("policy", "init")
    assert res.exit_code == 0, res.output
    path = ws.path / P.POLICY_FILE
    assert path.read_text() == P.default_text()
    res = ws.invoke("policy", "validate")
    assert res.exit_code == 0 and "is valid" in res.output
    again = ws.invoke("policy", "init")
    assert again.exit_code == 2 and "already exists" in again.output


@pytest.mark.parametrize(
    ("text", "line", "key", "words"),
    [
        ("rules:\n  evasion:\n    min_ars: high\n", 3, "rules.evasion.min_ars", "from 0 to 1"),
        ("rules:\n  evasion:\n    min_ars: 1.5\n", 3, "rules.evasion.min_ars", "got 1.5"),
        ("evidence:\n  max_age_days: 0\n", 2, "evidence.max_age_days", "from 1 to 3650"),
        ("evidence:\n  on_missing: maybe\n", 2, "evidence.on_missing", "no-go, needs-approval"),
        ("rules:\n  evasoin:\n    min_ars: 0.9\n", 2, "rules.evasoin", "did you mean 'evasion'"),
        ("approval:\n  required: 1\n", 2, "approval.required", "true or false"),
        ("rules:\n  evasion:\n    min_ars: 0.9\n    min_ars: 0.8\n", 4, "rules.evasion.min_ars", "twice"),
        ("version: 2\n", 1, "version", "from 1 to 1"),
        ("overrides:\n  tiers:\n    hihg:\n      approval:\n        required: true\n", 3,
         "overrides.tiers.hihg", "did you mean 'high'"),
        ("overrides:\n  domains:\n    finance:\n      rules:\n        evasion:\n          min_ars: x\n",
         6, "overrides.domains.finance.rules.evasion.min_ars", "a number"),
        ("monitoring:\n  drift_alert_psi: 0.5\n", 2, "monitoring.drift_alert_psi", "drift_block_psi"),
        ("rules: [1, 2]\n", 1, "rules", "section"),
    ],
)
def test_validation_names_file_line_and_key(tmp_path, text, line, key, words):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(P.PolicyError) as exc:
        P.load(f)
    msg = str(exc.value)
    assert msg.startswith(f"{f}:{line}: {key}"), msg
    assert words in msg
    assert "\n" not in msg


def test_yaml_syntax_error_has_a_line(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("rules:\n  evasion: {min_ars: 0.9\n")
    with pytest.raises(P.PolicyError, match=r"p\.yaml:\d+: not valid YAML"):
        P.load(f)


def test_cli_validate_bad_file_is_one_line_exit_2(sqlite_workspace, tmp_path):
    f = tmp_path / "bad.yaml"
    f.write_text("rules:\n  privacy:\n    max_membership_advantage: -1\n")
    res = sqlite_workspace.invoke("policy", "validate", str(f))
    assert res.exit_code == 2
    assert res.stderr.strip().count("\n") == 0
    assert res.stderr.startswith(f"error: {f}:3: rules.privacy.max_membership_advantage")
    assert "Traceback" not in res.stderr
    missing = sqlite_workspace.invoke("policy", "validate", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 2 and "riskloop policy init" in missing.stderr


def test_partial_file_takes_defaults_and_overrides_apply_in_order(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text(
        "name: strict\nrules:\n  evasion:\n    min_ars: 0.95\n"
        "overrides:\n  tiers:\n    high:\n      rules:\n        evasion:\n          min_ars: 0.97\n"
        "  domains:\n    healthcare:\n      rules:\n        evasion:\n          min_ars: 0.99\n"
    )
    pol = P.load(f)
    assert pol.name == "strict"
    assert pol.data["rules"]["supply_chain"]["max_critical"] == 0  # default kept
    assert pol.resolve(tier="minimal", domain="general").get("rules.evasion.min_ars") == 0.95
    high = pol.resolve(tier="high", domain="finance")
    assert high.get("rules.evasion.min_ars") == 0.97
    assert high.get("approval.required") is True  # default tier override kept (deep merge)
    assert high.key_of("rules.evasion.min_ars") == "overrides.tiers.high.rules.evasion.min_ars"
    assert high.line_of("rules.evasion.min_ars") == 10
    both = pol.resolve(tier="high", domain="healthcare")
    assert both.get("rules.evasion.min_ars") == 0.99  # domain wins over tier
    assert both.applied == ("tier:high", "domain:healthcare")


def test_same_meaning_same_digest(tmp_path):
    a = P.parse("rules:\n  evasion:\n    min_ars: 0.85\n")
    b = P.parse("# a comment\nrules: {evasion: {min_ars: 0.850}}\n")
    assert a.digest == b.digest == P.load(None).digest
    assert P.parse("rules: {evasion: {min_ars: 0.86}}").digest != a.digest


def test_workspace_policy_file_is_picked_up(sqlite_workspace):
    ws = sqlite_workspace
    (ws.path / P.POLICY_FILE).write_text("name: house\n")
    assert P.load(None, workspace=ws.path).name == "house"
    res = ws.invoke("policy", "show", "--json")
    assert res.exit_code == 0
    import json

    out = json.loads(res.output)
    assert out["policy"]["name"] == "house" and out["source"].endswith(P.POLICY_FILE)


# --- property tests -------------------------------------------------------------------------

_TEXT = st.text(alphabet=string.ascii_letters + string.digits + " -_.", min_size=1, max_size=30).filter(
    lambda s: s.strip() == s and s.strip())


def _leaf(leaf: object) -> st.SearchStrategy:
    if isinstance(leaf, P.Bool):
        return st.booleans()
    if isinstance(leaf, P.Choice):
        return st.sampled_from(leaf.values)
    if isinstance(leaf, P.Text):
        return _TEXT
    assert isinstance(leaf, P.Num)
    lo = leaf.lo if leaf.lo is not None else 0
    if leaf.integer:
        base = st.integers(int(lo), int(leaf.hi) if leaf.hi is not None else 10**6)
    else:
        base = st.floats(lo, leaf.hi if leaf.hi is not None else 1e6, allow_nan=False,
                         allow_infinity=False)
    return st.one_of(st.none(), base) if leaf.nullable else base


def _body(spec: dict, partial: bool) -> st.SearchStrategy:
    parts = {}
    for key, sub in spec.items():
        if key in P.PARTIAL:
            continue
        parts[key] = _body(sub, partial) if isinstance(sub, dict) else _leaf(sub)
    if not partial:
        return st.fixed_dictionaries(parts)
    return st.fixed_dictionaries({}, optional=parts)


def _fix_psi(body: dict) -> dict:
    mon = body.get("monitoring")
    if mon and "drift_alert_psi" in mon and "drift_block_psi" in mon:
        lo, hi = sorted([mon["drift_alert_psi"], mon["drift_block_psi"]])
        mon["drift_alert_psi"], mon["drift_block_psi"] = lo, hi
    elif mon:
        mon.pop("drift_alert_psi", None)
        mon.pop("drift_block_psi", None)
    return body


@st.composite
def policies(draw: st.DrawFn) -> dict:
    top = {k: v for k, v in P.SPEC.items() if k != "overrides"}
    data = _fix_psi(draw(_body(top, partial=False)))
    bodies = _body(P.BODY_SPEC, partial=True)
    tiers = draw(st.dictionaries(st.sampled_from(TIERS), bodies, max_size=2))
    domains = draw(st.dictionaries(st.sampled_from(DOMAINS), bodies, max_size=2))
    data["overrides"] = {"tiers": {k: _fix_psi(v) for k, v in tiers.items()},
                         "domains": {k: _fix_psi(v) for k, v in domains.items()}}
    return data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies())
def test_policy_round_trips_through_yaml(data):
    text = P.dump(data)
    pol = P.parse(text, where="p.yaml")
    expected = P.deep_merge(P.defaults(), data)
    assert pol.data == expected
    assert P.parse(pol.dump()).data == pol.data
    assert P.parse(pol.dump()).digest == pol.digest


_LEAVES = [".".join(p) for p, leaf in P.leaves(P.SPEC) if not isinstance(leaf, P.Text)]


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(_LEAVES), st.sampled_from(["bogus", "[1, 2]", "{a: 1}", "''"]))
def test_any_bad_leaf_is_reported_at_its_own_line(path, bad):
    text = P.dump(P.defaults())
    lines = text.splitlines()
    line = P.parse(text).lines[path]
    old = lines[line - 1]
    indent = old[: len(old) - len(old.lstrip())]
    lines[line - 1] = f"{indent}{path.split('.')[-1]}: {bad}"
    with pytest.raises(P.PolicyError) as exc:
        P.parse("\n".join(lines) + "\n", where="p.yaml")
    assert str(exc.value).startswith(f"p.yaml:{line}: {path}: "), (str(exc.value), line)
