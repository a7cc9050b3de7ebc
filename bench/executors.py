"""Executor benchmark: the evasion suite inline vs in the local process pool (and Ray).

    .venv/bin/python bench/executors.py                     # 768 and 1,536 rows, 2 workers
    .venv/bin/python bench/executors.py --rows 3072 --workers 4 --ray

The digits CNN of the demo (8 epochs), the default evasion ensemble at 8/255 on ``--rows``
test rows (the held-out digits repeated), one stored run per executor in a scratch
workspace. Prints seconds, the ratio to the inline run and the ARS (which must agree: the
shards, their seeds and the merge do not depend on the executor; inline, a single run over
all rows, may differ in the last digits).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[768, 1536])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ray", action="store_true", help="also run on a local Ray instance")
    args = ap.parse_args()

    from riskloop import load_settings
    from riskloop.assess import executors, suites
    from riskloop.demo import digits
    from riskloop.inventory import assets
    from riskloop.store import db
    from riskloop.store.db import transaction
    from riskloop.targets.torchspec import save_torch_model

    root = Path(tempfile.mkdtemp(prefix="riskloop-bench-")) / "ws"
    root.mkdir()
    settings = load_settings(workspace=root)
    db.upgrade(settings)
    X_tr, X_te, y_tr, y_te = digits.digits_split(random_state=0)
    module, spec = digits.train_digits_cnn(X_tr, y_tr, random_state=0, epochs=8)
    save_torch_model(root / "model", module, spec)
    reps = -(-max(args.rows) // len(X_te))
    X, y = np.concatenate([X_te] * reps), np.concatenate([y_te] * reps)
    with transaction(settings) as s:
        assets.register_model(s, path=root / "model", name="cnn", framework="torch",
                              domain="general", actor="bench")
        for n in args.rows:
            digits.save_npz(root / f"rows{n}.npz", X[:n], y[:n])
            assets.register_dataset(s, path=root / f"rows{n}.npz", name=f"rows{n}", target="y",
                                    actor="bench")
    runs = [("inline", lambda: None),
            (f"local x{args.workers}", lambda: executors.runner_for(
                "evasion", executors.LocalExecutor(max_workers=args.workers)))]
    if args.ray:
        runs.append((f"ray x{args.workers}", lambda: executors.runner_for(
            "evasion", executors.RayExecutor(num_cpus=args.workers))))
    print("| rows | executor | seconds | vs inline | ARS |")
    print("|---|---|---|---|---|")
    for n in args.rows:
        base = None
        for name, make in runs:
            runner = make()
            t0 = time.perf_counter()
            out = suites.run_assessment(settings, model_ref="cnn@1", data_ref=f"rows{n}@1",
                                        suite="evasion", options={"eps": [8 / 255],
                                                                  "standard_eps": 8 / 255},
                                        random_state=0, runner=runner)
            sec = time.perf_counter() - t0
            base = base or sec
            print(f"| {n} | {name} | {sec:.1f} | {sec / base:.2f}x | {out['metrics']['ars']:.4f} |",
                  flush=True)


if __name__ == "__main__":
    main()
