"""API tokens: created once, stored hashed, timing-safe look-up, revocation, roles."""

from __future__ import annotations

import json

from riskloop.service import tokens
from riskloop.store.db import transaction
from riskloop.store.models import ApiToken


def test_token_lifecycle(ready):
    out = json.loads(ready.invoke("token", "create", "--role", "engineer", "--owner", "ana",
                                  "--json").output)
    secret = out["token"]
    with transaction(ready.settings) as s:
        rec = s.query(ApiToken).filter_by(prefix=out["prefix"]).one()
        assert rec.token_hash != secret and secret not in rec.token_hash
        assert tokens.authenticate(s, secret).owner == "ana"
        assert tokens.authenticate(s, secret[:-1] + ("A" if secret[-1] != "A" else "B")) is None
        assert tokens.authenticate(s, "rlk_deadbeef_nope") is None
        assert tokens.authenticate(s, None) is None
    assert ready.invoke("token", "revoke", out["prefix"]).exit_code == 0
    with transaction(ready.settings) as s:
        assert tokens.authenticate(s, secret) is None
    assert secret not in ready.invoke("audit", "--json").output


def test_bad_role_and_permissions(ready):
    res = ready.run("token", "create", "--role", "root", "--owner", "x")
    assert res.returncode == 2 and "unknown role 'root'" in res.stderr
    assert tokens.allowed("risk-officer", "approve") and not tokens.allowed("engineer", "approve")
    assert tokens.allowed("engineer", "assess") and not tokens.allowed("viewer", "assess")
    assert tokens.allowed("admin", "tokens") and not tokens.allowed("risk-officer", "tokens")
