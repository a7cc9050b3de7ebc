"""Inventory: registering datasets and models, versions, references, lineage, risk profiles."""

from __future__ import annotations

import json

import pytest

from tests.helpers import write_csv, write_model_folder, write_npz, write_parquet


def _json(res):
    assert res.exit_code == 0, res.output
    return json.loads(res.output)


def test_register_datasets_of_each_format(ready, tmp_path):
    csv = _json(ready.invoke("register", "dataset", str(write_csv(tmp_path / "c.csv", rows=20)),
                             "--name", "credit", "--sensitive", "sex,age", "--target", "label",
                             "--json"))
    assert csv["rows"] == 20 and csv["format"] == "csv"
    assert csv["sensitive"] == ["sex", "age"] and csv["target"] == "label"
    assert {c["name"] for c in csv["schema"]} == {"age", "income", "sex", "label"}
    pq = _json(ready.invoke("register", "dataset", str(write_parquet(tmp_path / "p.parquet")),
                            "--name", "pq", "--json"))
    assert pq["rows"] == 15 and pq["format"] == "parquet"
    npz = _json(ready.invoke("register", "dataset", str(write_npz(tmp_path / "a.npz")),
                             "--name", "arr", "--target", "y", "--json"))
    assert npz["rows"] == 12 and npz["format"] == "npz"
    folder = tmp_path / "parts"
    write_csv(folder / "a.csv", rows=5)
    write_csv(folder / "b.csv", rows=7, seed=2)
    fo = _json(ready.invoke("register", "dataset", str(folder), "--name", "parts", "--json"))
    assert fo["rows"] == 12 and fo["files"] == 2


def test_versions_autoincrement_and_resolve(ready, tmp_path):
    path = write_model_folder(tmp_path / "m")
    a = _json(ready.invoke("register", "model", str(path), "--name", "m", "--framework", "torch",
                           "--domain", "general", "--json"))
    (path / "weights.bin").write_bytes(b"v2")
    b = _json(ready.invoke("register", "model", str(path), "--name", "m", "--framework", "torch",
                           "--domain", "general", "--json"))
    assert (a["version"], b["version"]) == (1, 2)
    assert a["digest"] != b["digest"]
    assert _json(ready.invoke("show", "m@latest", "--json"))["version"] == 2
    assert _json(ready.invoke("show", "m@1", "--json"))["digest"] == a["digest"]
    assert _json(ready.invoke("show", "m", "--json"))["version"] == 2


def test_inventory_json_shape(ready, tmp_path):
    ready.invoke("register", "dataset", str(write_csv(tmp_path / "c.csv")), "--name", "d")
    ready.invoke("register", "model", str(write_model_folder(tmp_path / "m")), "--name", "m",
                 "--framework", "torch", "--domain", "finance", "--trained-on", "d@1")
    inv = _json(ready.invoke("inventory", "--json"))
    assert set(inv) == {"models", "datasets"}
    for entry in inv["models"] + inv["datasets"]:
        assert {"name", "version", "digest"} <= set(entry)
    assert inv["models"][0]["trained_on"] == ["d@1"]


def test_lineage_tree(ready, tmp_path):
    ready.invoke("register", "dataset", str(write_csv(tmp_path / "c.csv")), "--name", "d")
    base = write_model_folder(tmp_path / "m")
    ready.invoke("register", "model", str(base), "--name", "m", "--framework", "torch",
                 "--domain", "finance", "--trained-on", "d@1")
    hard = write_model_folder(tmp_path / "m2", payload=b"hardened")
    ready.invoke("register", "model", str(hard), "--name", "m", "--framework", "torch",
                 "--domain", "finance", "--trained-on", "d@latest", "--derived-from", "m@1")
    tree = _json(ready.invoke("lineage", "m@2", "--json"))
    assert tree["model"] == "m@2"
    assert tree["derived_from"]["model"] == "m@1"
    assert tree["trained_on"][0]["dataset"] == "d@1"
    assert len(tree["trained_on"][0]["digest"]) == 64
    text = ready.invoke("lineage", "m@2")
    assert "derived from" in text.output and "d@1" in text.output


def test_risk_profile_and_tier_override(ready, tmp_path):
    path = write_model_folder(tmp_path / "m")
    hc = _json(ready.invoke("register", "model", str(path), "--name", "h", "--framework", "torch",
                            "--domain", "healthcare", "--json"))
    assert hc["tier"] == "high" and hc["impact"]["confidentiality"] == 5
    bot = _json(ready.invoke("register", "model", str(path), "--name", "b", "--framework", "torch",
                             "--domain", "chatbot", "--tier", "high", "--tier-reason",
                             "answers insurance claims", "--json"))
    assert bot["tier"] == "high" and "answers insurance claims" in bot["tier_reason"]
    no_reason = ready.invoke("register", "model", str(path), "--name", "c", "--framework",
                             "torch", "--domain", "chatbot", "--tier", "high")
    assert no_reason.exit_code == 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["register", "dataset", "/nonexistent/x.csv", "--name", "d"], "does not exist"),
        (["show", "ghost@3"], "unknown model or dataset 'ghost@3'"),
        (["lineage", "ghost@latest"], "unknown model 'ghost@latest'"),
        (["show", "bad@@ref"], "bad reference"),
    ],
)
def test_bad_input_one_line(ready, args, needle):
    res = ready.run(*args)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr
    assert res.stderr.strip().count("\n") == 0
    assert "Traceback" not in res.stderr


def test_duplicate_version_unknown_domain_and_disguised_file(ready, tmp_path):
    path = write_model_folder(tmp_path / "m")
    assert ready.invoke("register", "model", str(path), "--name", "m", "--framework", "torch",
                        "--domain", "general", "--version", "3").exit_code == 0
    dup = ready.run("register", "model", str(path), "--name", "m", "--framework", "torch",
                    "--domain", "general", "--version", "3")
    assert dup.returncode == 2 and "already has version 3" in dup.stderr
    dom = ready.run("register", "model", str(path), "--name", "m", "--framework", "torch",
                    "--domain", "space")
    assert dom.returncode == 2 and "unknown domain 'space'" in dom.stderr
    fake = tmp_path / "fake.parquet"
    fake.write_text("a,b\n1,2\n")
    bad = ready.run("register", "dataset", str(fake), "--name", "f")
    assert bad.returncode == 2 and "not Parquet" in bad.stderr
    fake_csv = tmp_path / "fake.csv"
    fake_csv.write_bytes(b"PK\x03\x04" + bytes(range(256)))
    bad = ready.run("register", "dataset", str(fake_csv), "--name", "f")
    assert bad.returncode == 2 and "CSV" in bad.stderr
    inv = json.loads(ready.run("inventory", "--json").stdout)
    assert [m["version"] for m in inv["models"]] == [3] and inv["datasets"] == []


def test_npz_with_object_array_is_refused(ready, tmp_path):
    import numpy as np

    path = tmp_path / "obj.npz"
    np.savez(path, X=np.array([{"a": 1}], dtype=object))
    res = ready.run("register", "dataset", str(path), "--name", "o")
    assert res.returncode == 2 and "pickle" in res.stderr
