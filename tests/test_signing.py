"""Signing: OMS signatures with local EC keys; verify fails on changed, added, removed files."""

from __future__ import annotations

import json
import stat

import pytest

from tests.helpers import write_model_folder


@pytest.fixture
def signed(ready, tmp_path):
    model = write_model_folder(tmp_path / "model")
    ready.invoke("register", "model", str(model), "--name", "m", "--framework", "torch",
                 "--domain", "finance")
    key = tmp_path / "keys" / "k.pem"
    res = ready.invoke("keygen", "--out", str(key), "--json")
    assert res.exit_code == 0, res.output
    res = ready.invoke("sign", "m@1", "--key", str(key), "--json")
    assert res.exit_code == 0, res.output
    return ready, model, key


def test_keygen_writes_private_key_600(tmp_path, ready):
    key = tmp_path / "k.pem"
    out = json.loads(ready.invoke("keygen", "--out", str(key), "--json").output)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert out["public_key"].endswith("k.pub.pem") and len(out["fingerprint"]) == 64
    again = ready.run("keygen", "--out", str(key))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_sign_and_verify_ok(signed):
    ws, _model, key = signed
    res = ws.invoke("verify", "m@1", "--json")
    assert json.loads(res.output)["ok"] is True
    shown = json.loads(ws.invoke("show", "m@1", "--json").output)
    assert shown["signature_status"] == "signed"
    # The explicit public key works too.
    pub = key.with_name("k.pub.pem")
    assert ws.invoke("verify", "m@1", "--key", str(pub)).exit_code == 0


def test_signature_readable_by_model_signing_library(signed):
    import model_signing

    ws, model, key = signed
    sig = json.loads(ws.invoke("show", "m@1", "--json").output)
    sig_path = ws.settings.state_dir / "signatures" / "m" / "1.sig"
    assert sig_path.exists() and sig["signature_status"] == "signed"
    model_signing.verifying.Config().use_elliptic_key_verifier(
        public_key=key.with_name("k.pub.pem")
    ).verify(model, sig_path)


@pytest.mark.parametrize("change", ["modify", "add", "remove"])
def test_verify_fails_on_any_change(signed, change):
    ws, model, _key = signed
    if change == "modify":
        (model / "weights.bin").write_bytes(b"tampered")
    elif change == "add":
        (model / "extra.py").write_text("import os")
    else:
        (model / "sub" / "vocab.txt").unlink()
    res = ws.run("verify", "m@1")
    assert res.returncode == 1
    word = {"modify": "changed", "add": "added", "remove": "removed"}[change]
    assert word in res.stderr
    shown = json.loads(ws.run("show", "m@1", "--json").stdout)
    assert shown["signature_status"] == "invalid"


def test_wrong_public_key_fails(signed, tmp_path):
    ws, _model, _key = signed
    other = tmp_path / "other.pem"
    ws.invoke("keygen", "--out", str(other))
    res = ws.run("verify", "m@1", "--key", str(tmp_path / "other.pub.pem"))
    assert res.returncode == 1 and "signature check failed" in res.stderr


def test_sign_refuses_changed_model_and_bad_key(ready, tmp_path):
    model = write_model_folder(tmp_path / "model")
    ready.invoke("register", "model", str(model), "--name", "m", "--framework", "torch",
                 "--domain", "finance")
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    res = ready.run("sign", "m@1", "--key", str(bad))
    assert res.returncode == 2 and "not an unencrypted PEM private key" in res.stderr
    key = tmp_path / "k.pem"
    ready.invoke("keygen", "--out", str(key))
    (model / "weights.bin").write_bytes(b"changed after registration")
    res = ready.run("sign", "m@1", "--key", str(key))
    assert res.returncode == 1 and "changed since it was registered" in res.stderr
    unsigned = ready.run("verify", "m@1")
    assert unsigned.returncode == 2 and "has no signature" in unsigned.stderr
