"""``riskloop assess --executor local|ray``: the evasion suite split into row shards, run in a
local process pool or as Ray tasks (a local Ray instance, ``ray.init(num_cpus=2)``), merged;
the stored runs are identical on the same seed, and with one shard equal to the in-process run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from riskloop.assess import executors, suites
from riskloop.demo import digits
from riskloop.errors import InputError
from riskloop.inventory import assets
from riskloop.store.db import transaction
from riskloop.targets.torchspec import save_torch_model

EVASION = {"attacks": ["fgsm", "pgd"], "eps": [0.05, 0.1], "standard_eps": 0.1, "pgd.steps": "5"}


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from riskloop import load_settings
    from riskloop.store import db

    root = tmp_path_factory.mktemp("exec") / "ws"
    root.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("RISKLOOP_DB_URL", raising=False)
        mp.setenv("RISKLOOP_ACTOR", "tester")
        s = load_settings(workspace=root)
        db.upgrade(s)
        X_tr, X_te, y_tr, y_te = digits.digits_split(random_state=0)
        module, spec = digits.train_digits_cnn(X_tr, y_tr, random_state=0, epochs=8)
        save_torch_model(root / "model", module, spec)
        digits.save_npz(root / "test.npz", X_te[:90], y_te[:90])
        with transaction(s) as session:
            assets.register_dataset(session, path=root / "test.npz", name="test", target="y", actor="tester")
            assets.register_model(session, path=root / "model", name="cnn", framework="torch",
                                  domain="general", actor="tester")
        yield s
        db.dispose_engines()


def _run(settings, runner=None):  # type: ignore[no-untyped-def]
    return suites.run_assessment(settings, model_ref="cnn@1", data_ref="test@1", suite="evasion",
                                 options=dict(EVASION), random_state=7, runner=runner)


def _scrub(value: Any) -> Any:
    """Everything but wall-clock seconds and per-shard self-check details."""
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items() if k not in ("seconds", "checks")}
    if isinstance(value, list):
        return [_scrub(v) for v in value]
    return value


def _comparable(run: dict) -> str:
    return json.dumps(_scrub({"metrics": run["metrics"], "findings": run["findings"],
                              "warnings": run["warnings"]}), sort_keys=True)


def test_one_shard_equals_the_in_process_run(ws):
    plain = _run(ws)
    local = _run(ws, executors.runner_for("evasion", executors.LocalExecutor(max_workers=1)))
    assert json.loads(_comparable(local))["metrics"]["ars"] == pytest.approx(plain["metrics"]["ars"])
    assert json.loads(_comparable(local))["metrics"]["curve"] == plain["metrics"]["curve"]
    assert local["params"]["shards"] == 1 and local["params"]["executor"] == "local"
    assert Path(local["artifacts"]["adversarial_examples"]).exists()


@pytest.mark.slow
def test_ray_matches_the_local_pool(ws):
    ray = pytest.importorskip("ray")
    local = _run(ws, executors.runner_for("evasion", executors.LocalExecutor(max_workers=2), shard_rows=30))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = _run(ws, executors.runner_for("evasion", executors.RayExecutor(), shard_rows=30))
    finally:
        ray.shutdown()
    assert local["params"]["shards"] == remote["params"]["shards"] == 3
    assert remote["params"]["executor"] == "ray"
    assert _comparable(local) == _comparable(remote)
    # The merge is exact for counts: 90 rows, and the curve is the mean of the shards'.
    assert local["metrics"]["points"] == 90
    x = np.load(remote["artifacts"]["adversarial_examples"])["x_adv"]
    assert x.shape[0] == 90


def test_bad_executor_choices_are_one_line_errors():
    with pytest.raises(InputError, match="unknown executor"):
        executors.get_executor("spark")
    with pytest.raises(InputError, match="--address applies to --executor ray"):
        executors.get_executor("local", address="10.0.0.1:6379")
    with pytest.raises(InputError, match="shard size"):
        executors.shards(10, 0)


def test_the_local_pool_reports_each_finished_call_and_keeps_call_order():
    seen: list[int] = []
    out = executors.LocalExecutor(max_workers=2, threads=1).map(
        executors.shards, [(10, 3), (4, 2), (1, 5)], on_done=seen.append)
    assert out == [executors.shards(10, 3), executors.shards(4, 2), executors.shards(1, 5)]
    assert seen == [1, 2, 3]


def test_assess_defaults_to_the_local_pool_and_inline_with_an_endpoint(ws):
    from typer.testing import CliRunner

    from riskloop.cli.app import app

    cli = CliRunner()
    base = ["--workspace", str(ws.workspace), "assess", "cnn@1", "--data", "test@1",
            "--attacks", "fgsm", "--eps", "0.1", "--json"]
    res = cli.invoke(app, base, env={"RISKLOOP_ACTOR": "tester"})
    assert res.exit_code == 0, res.output
    params = json.loads(res.stdout)["params"]
    assert params["executor"] == "local" and params["shards"] == 1  # 90 rows: one shard, here
    res = cli.invoke(app, [*base, "--executor", "inline"], env={"RISKLOOP_ACTOR": "tester"})
    assert res.exit_code == 0 and "executor" not in json.loads(res.stdout)["params"]
    bad = cli.invoke(app, [*base, "--executor", "local", "--endpoint", "http://127.0.0.1:9/x"],
                     env={"RISKLOOP_ACTOR": "tester"})
    assert bad.exit_code == 2 and "query budget" in bad.output
