"""Wall time of each mitigation relative to plain training of the same model on the same data.

The digits CNN of the demo (about 70k weights) on scikit-learn's ``load_digits`` (1,078
training rows), ``--epochs`` epochs for every method (distillation trains two models).
DP-SGD runs twice, with Opacus' per-sample hooks and with ghost clipping; the two must give
the same model (checked here) and the faster one is the default. Every timing is the best of
``--repeat`` runs, interleaved, so load on the machine hits every method alike.

    .venv/bin/python bench/mitigate.py [--epochs 10] [--repeat 3] [--threads 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from riskloop.demo import digits
from riskloop.mitigate import (
    AdversarialTraining,
    DataSanitization,
    DefensiveDistillation,
    DPTraining,
    FeatureSqueezing,
)
from riskloop.mitigate.base import accuracy, start_module, train


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--only", default=None,
                    help="run plain training and the methods whose name contains this text")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    X_tr, X_te, y_tr, y_te = digits.digits_split(random_state=0)
    spec = digits.digits_spec()
    parent, _ = digits.train_digits_cnn(X_tr, y_tr, random_state=0, epochs=args.epochs)
    E = args.epochs

    def plain() -> Any:
        m = start_module(parent, spec, "scratch", 0)
        return train(m, X_tr, y_tr, epochs=E, batch_size=64, lr=1e-3, random_state=0)

    methods: dict[str, Callable[[], Any]] = {
        "plain training": plain,
        "adversarial training, PGD-7": lambda: AdversarialTraining(
            method="pgd", eps=16 / 255, steps=7, epochs=E).run(parent, spec, X_tr, y_tr).module,
        "adversarial training, TRADES-7": lambda: AdversarialTraining(
            method="trades", eps=16 / 255, steps=7, epochs=E).run(parent, spec, X_tr, y_tr).module,
        "DP-SGD, per-sample hooks": lambda: DPTraining(
            epochs=E, grad_sample_mode="hooks").run(parent, spec, X_tr, y_tr).module,
        "DP-SGD, ghost clipping": lambda: DPTraining(
            epochs=E, grad_sample_mode="ghost").run(parent, spec, X_tr, y_tr).module,
        "defensive distillation (2 models)": lambda: DefensiveDistillation(
            epochs=E).run(parent, spec, X_tr, y_tr).module,
        "data sanitization (flag + retrain)": lambda: DataSanitization(
            epochs=E).run(parent, spec, X_tr, y_tr).module,
        "feature squeezing (calibrate)": lambda: FeatureSqueezing().run(
            parent, spec, X_tr, y_tr).module,
    }
    if args.only:
        methods = {k: v for k, v in methods.items()
                   if k == "plain training" or args.only.lower() in k.lower()}
    best: dict[str, float] = {k: float("inf") for k in methods}
    models: dict[str, Any] = {}
    for _ in range(args.repeat):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            models[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    hooks, ghost = models.get("DP-SGD, per-sample hooks"), models.get("DP-SGD, ghost clipping")
    if hooks is None or ghost is None:
        hooks = ghost = models["plain training"]
    # float sums in another order: tiny differences that grow over the epochs, not a bug
    max_diff = max(float((a - b).abs().max()) for a, b in
                   zip(hooks.state_dict().values(), ghost.state_dict().values(), strict=True))
    with torch.no_grad():
        agree = float((hooks(torch.from_numpy(X_te)).argmax(1)
                       == ghost(torch.from_numpy(X_te)).argmax(1)).float().mean())
    base = best["plain training"]
    rows = [{"method": k, "seconds": round(v, 3), "ratio": round(v / base, 2),
             "test_accuracy": round(accuracy(models[k], X_te, y_te), 4)} for k, v in best.items()]
    print(f"{'method':<38}{'seconds':>9}{'x plain':>9}{'test acc':>10}")
    for r in rows:
        print(f"{r['method']:<38}{r['seconds']:>9.2f}{r['ratio']:>9.2f}{r['test_accuracy']:>10.4f}")
    faster = "ghost" if best.get("DP-SGD, ghost clipping", 0) < best.get("DP-SGD, per-sample hooks", 0) else "hooks"
    print(f"DP: ghost vs hooks: largest weight difference {max_diff:.2e}, same test "
          f"predictions on {agree:.1%} of rows; faster: {faster}")
    out = {"machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
           "threads": args.threads, "epochs": E, "repeat": args.repeat, "rows": rows,
           "dp_ghost_vs_hooks_max_weight_diff": max_diff, "dp_prediction_agreement": agree,
           "dp_faster": faster,
           "accuracy_plain_parent": accuracy(parent, X_te, y_te)}
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    np.seterr(all="ignore")


if __name__ == "__main__":
    main()
