"""``riskloop drift``: a registered reference dataset against a file, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.datasets import load_breast_cancer


@pytest.fixture
def cancer_files(tmp_path: Path) -> dict[str, Path]:
    frame = load_breast_cancer(as_frame=True).frame.sample(frac=1.0, random_state=0)
    frame["size"] = np.where(frame["mean radius"] > 14, "large", "small")
    ref, cur = frame.iloc[:300], frame.iloc[300:]
    paths = {"ref": tmp_path / "ref.csv", "same": tmp_path / "same.parquet",
             "shifted": tmp_path / "shifted.csv", "short": tmp_path / "short.csv"}
    ref.to_csv(paths["ref"], index=False)
    cur.drop(columns=["target"]).to_parquet(paths["same"])
    shifted = cur.drop(columns=["target"]).copy()
    shifted["mean texture"] *= 1.3
    shifted["worst area"] += 300
    shifted["size"] = "large"
    shifted.to_csv(paths["shifted"], index=False)
    cur[["mean radius"]].to_csv(paths["short"], index=False)
    return paths


def test_drift_table_and_json(ready, cancer_files: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    r = ready.invoke("register", "dataset", str(cancer_files["ref"]), "--name", "cancer",
                     "--target", "target")
    assert r.exit_code == 0, r.output
    calm = ready.invoke("drift", "cancer@1", str(cancer_files["same"]), "--json")
    assert calm.exit_code == 0, calm.output
    out = json.loads(calm.output)
    assert out["reference"] == "cancer@1" and not out["dataset_drift"]
    assert len(out["features"]) == 31  # 30 numeric + size; the label is not in the window
    assert any("label column 'target'" in w for w in out["warnings"])
    # 300 vs 269 rows in 10 bins: PSI of identical distributions averages ~0.064, near 0.1
    assert any("make PSI noisy" in w for w in out["warnings"])
    calm_ks = json.loads(ready.invoke("drift", "cancer@1", str(cancer_files["same"]), "--json",
                                      "--stat", "ks", "--threshold", "0.001").output)
    assert calm_ks["drifted"] == []
    shifted = ready.invoke("drift", "cancer@1", str(cancer_files["shifted"]), "--json")
    out = json.loads(shifted.output)
    assert {"mean texture", "worst area", "size"} <= set(out["drifted"])
    texture = next(f for f in out["features"] if f["name"] == "mean texture")
    ref = pd.read_csv(cancer_files["ref"])["mean texture"].to_numpy()
    cur = pd.read_csv(cancer_files["shifted"])["mean texture"].to_numpy()
    assert texture["ks"] == pytest.approx(stats.ks_2samp(ref, cur).statistic, abs=1e-12)
    assert texture["wasserstein"] == pytest.approx(
        stats.wasserstein_distance(ref, cur) / np.std(ref), rel=1e-9)
    table = ready.invoke("drift", "cancer@1", str(cancer_files["shifted"]),
                         "--binning", "evidently", "--stat", "wasserstein")
    assert table.exit_code == 0, table.output
    assert "evidently bins" in table.output and "yes" in table.output
    assert "features drifted by wasserstein" in table.output


def test_drift_bad_input_one_line_exit_2(ready, cancer_files: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    ready.invoke("register", "dataset", str(cancer_files["ref"]), "--name", "cancer")
    cases = [
        (("drift", "nope@1", str(cancer_files["same"])), "unknown dataset 'nope@1'"),
        (("drift", "cancer@1", str(cancer_files["short"])), "lacks column"),
        (("drift", "cancer@1", "missing.csv"), "does not exist"),
        (("drift", "cancer@1", str(cancer_files["same"]), "--binning", "sturges"),
         "unknown --binning"),
        (("drift", "cancer@1", str(cancer_files["same"]), "--stat", "mmd"), "unknown drift"),
    ]
    for args, message in cases:
        res = ready.invoke(*args)
        assert res.exit_code == 2, (args, res.output)
        assert res.stderr.startswith("error: ") and message in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and res.stdout == ""


def test_drift_refuses_a_reference_changed_on_disk(ready_sqlite, cancer_files: dict[str, Path]) -> None:  # type: ignore[no-untyped-def]
    ready_sqlite.invoke("register", "dataset", str(cancer_files["ref"]), "--name", "cancer")
    with open(cancer_files["ref"], "a") as fh:
        fh.write(",".join(["1"] * 31) + ",small\n")
    res = ready_sqlite.run("drift", "cancer@1", str(cancer_files["same"]))
    assert res.returncode == 1
    assert "changed since it was registered" in res.stderr
