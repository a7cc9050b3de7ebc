"""Evasion benchmark: riskloop vs IBM ART vs torchattacks on one digits CNN, same inputs.

    .venv/bin/pip install --no-deps torchattacks      # never pull torchvision
    .venv/bin/python bench/evasion.py                  # 1,000 inputs, 1 thread, 3 repeats

Part 1: L-inf PGD-10 and PGD-50 (step eps/4, no random start, final iterate) at two eps;
robust accuracy of each library, seconds, and ratios to the compute floor (steps x one forward
and one backward to the input on the whole batch, timed bare). riskloop is timed in both of
its modes: ``keep=final`` (the same computation as the peers) and its default ``keep=first``
(stops on a point once it is fooled).

Part 2: the standard ensemble (PGD-10, APGD-CE-50, Square-1000) at eps 8/255: riskloop's
evaluation (early exit; after the first attack the linear-bound verifier proves what it can,
and the later attacks skip those points) vs the same three attacks run one after another on
all points with each peer; robust accuracy is the worst case per point for everyone. riskloop
also runs once with ``verify=False`` (early exit only), to show what each part saves.

Part 3 (``--part suite``): the evasion suite's default run for images (the standard set over
the five-point eps list 1/255 ... 16/255), with and without proofs, riskloop only.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from riskloop.assess.evasion import PGD, RobustnessEvaluation
from riskloop.assess.evasion.suite import build_attacks
from riskloop.demo import digits
from riskloop.targets import TorchTarget
from riskloop.targets.torchspec import build_module, module_to_spec

LAYERS = [  # the 59,786-weight model of docs/benchmarks.md
    {"type": "Conv2d", "in_channels": 1, "out_channels": 32, "kernel_size": 3, "padding": 1},
    {"type": "ReLU"},
    {"type": "Conv2d", "in_channels": 32, "out_channels": 64, "kernel_size": 3, "padding": 1},
    {"type": "ReLU"},
    {"type": "Flatten"},
    {"type": "Linear", "in_features": 4096, "out_features": 10},
]


def timed(fn: Callable[[], object], repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def floor(module: nn.Module, X: torch.Tensor, y: torch.Tensor, steps: int) -> None:
    for p in module.parameters():
        p.requires_grad_(False)
    x = X.clone()
    for _ in range(steps):
        x.requires_grad_(True)
        loss = nn.functional.cross_entropy(module(x), y)
        (g,) = torch.autograd.grad(loss, x)
        x = x.detach() + 0 * g
    for p in module.parameters():
        p.requires_grad_(True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--square-queries", type=int, default=1000)
    ap.add_argument("--ensemble-eps", type=float, default=8 / 255)
    ap.add_argument("--part", choices=("all", "pgd", "ensemble", "suite"), default="all")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import torchattacks
    from art.attacks.evasion import (
        AutoProjectedGradientDescent,
        ProjectedGradientDescent,
        SquareAttack,
    )
    from art.estimators.classification import PyTorchClassifier
    from sklearn.datasets import load_digits

    d = load_digits()
    X_all = (d.images / 16.0).astype(np.float32)[:, None]
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(X_all))
    tr, te = perm[: len(X_all) - args.points], perm[len(X_all) - args.points:]
    torch.manual_seed(0)
    spec = module_to_spec(LAYERS, input_shape=[1, 8, 8], classes=[str(i) for i in range(10)])
    module = build_module(spec)
    digits.train_classifier(module, X_all[tr], d.target[tr], epochs=30, random_state=0)
    X, y = X_all[te], d.target[te].astype(np.int64)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    target = TorchTarget.from_spec(module, spec, batch_size=len(X))
    clf = PyTorchClassifier(module, loss=nn.CrossEntropyLoss(), input_shape=(1, 8, 8),
                            nb_classes=10, clip_values=(0.0, 1.0))
    onehot = np.eye(10)[y]
    params = sum(p.numel() for p in module.parameters())
    clean = float(digits.accuracy(module, X, y))
    print(f"model: {params} weights, clean accuracy {clean:.3f} on {len(X)} inputs; "
          f"torch threads {args.threads}; median of {args.repeats}")

    def acc(x_adv: np.ndarray) -> float:
        return float(digits.accuracy(module, np.asarray(x_adv, dtype=np.float32), y))

    if args.part != "ensemble":
        pgd_table(args, module, target, clf, X, y, Xt, yt, onehot, acc, torchattacks,
                  ProjectedGradientDescent)
    if args.part == "suite":
        suite_curve(target, X, y)
        return
    if args.part != "pgd":
        ensemble(args, module, target, clf, X, y, Xt, yt, onehot, torchattacks,
                 ProjectedGradientDescent, AutoProjectedGradientDescent, SquareAttack)


def pgd_table(args, module, target, clf, X, y, Xt, yt, onehot, acc, torchattacks,  # type: ignore[no-untyped-def]
              ProjectedGradientDescent) -> None:
    print("\n| eps | steps | robust acc riskloop / ART / torchattacks | floor s | riskloop final s (x floor) "
          "| riskloop first s (x floor) | ART s (x floor) | torchattacks s (x floor) |")
    print("|---|---|---|---|---|---|---|---|")
    for eps in (0.1, 0.05):
        for steps in (10, 50):
            f_s, _ = timed(lambda: floor(module, Xt, yt, steps), args.repeats)  # noqa: B023
            fin = PGD(eps=eps, steps=steps, random_start=False, keep="final", batch_size=len(X))
            first = PGD(eps=eps, steps=steps, random_start=False, batch_size=len(X))
            r_s, r_out = timed(lambda: fin.attack(target, X, y), args.repeats)  # noqa: B023
            q_s, q_out = timed(lambda: first.attack(target, X, y), args.repeats)  # noqa: B023
            art = ProjectedGradientDescent(clf, eps=eps, eps_step=eps / 4, max_iter=steps,
                                           batch_size=len(X), verbose=False)
            a_s, a_adv = timed(lambda: art.generate(X, y=onehot), args.repeats)  # noqa: B023
            ta = torchattacks.PGD(module, eps=eps, alpha=eps / 4, steps=steps, random_start=False)
            t_s, t_adv = timed(lambda: ta(Xt, yt), args.repeats)  # noqa: B023
            # robust accuracy over all points: clean-wrong points count as not robust
            ok = np.asarray(target.predict_proba(X)).argmax(1) == y
            ours = float((ok & ~r_out.success).mean())  # type: ignore[attr-defined]
            ours_first = float((ok & ~q_out.success).mean())  # type: ignore[attr-defined]
            print(f"| {eps} | {steps} | {ours:.3f} (first {ours_first:.3f}) / {acc(a_adv):.3f} / "
                  f"{acc(t_adv.detach().numpy()):.3f} | {f_s:.3f} | {r_s:.3f} ({r_s / f_s:.2f}x) | "
                  f"{q_s:.3f} ({q_s / f_s:.2f}x) | {a_s:.3f} ({a_s / f_s:.2f}x) | "
                  f"{t_s:.3f} ({t_s / f_s:.2f}x) |")


def ensemble(args, module, target, clf, X, y, Xt, yt, onehot, torchattacks,  # type: ignore[no-untyped-def]
             ProjectedGradientDescent, AutoProjectedGradientDescent, SquareAttack) -> None:
    eps = args.ensemble_eps
    nq = args.square_queries
    print(f"\nstandard ensemble at eps {eps:.4g} (PGD-10, APGD-CE-50, Square-{nq}), one run each")
    def ours(verify: bool) -> tuple[float, Any, str]:
        attacks = build_attacks(["pgd", "apgd-ce", "square"], norm="linf", random_state=0,
                                overrides={"square": {"queries": nq}})
        ev = RobustnessEvaluation(attacks=attacks, eps=[eps], standard_eps=eps, self_checks=False, verify=verify)
        t0 = time.perf_counter()
        res = ev.run(target, X, y)
        seconds = time.perf_counter() - t0
        parts = [f"{r['attack']} {r['seconds']:.2f}s on {r['attacked']}" for r in res.metrics["per_attack"]]
        for rec in res.metrics["verification"]["per_eps"]:
            parts.insert(1, f"proofs {rec['seconds']:.2f}s: {rec['proved']} of {rec['checked']} proved")
        return seconds, res, ", ".join(parts)

    ours_s, res, per = ours(True)
    plain_s, plain, plain_per = ours(False)

    def peer(run_all: list[Callable[[], np.ndarray]]) -> tuple[float, float, list[float]]:
        robust = np.ones(len(X), dtype=bool)
        parts = []
        t0 = time.perf_counter()
        for fn in run_all:
            s0 = time.perf_counter()
            x_adv = fn()
            parts.append(time.perf_counter() - s0)
            robust &= np.asarray(target.predict_proba(np.asarray(x_adv, dtype=np.float32))).argmax(1) == y
        return time.perf_counter() - t0, float(robust.mean()), parts

    art_runs = [
        lambda: ProjectedGradientDescent(clf, eps=eps, eps_step=eps / 4, max_iter=10, num_random_init=1,
                                         batch_size=len(X), verbose=False).generate(X, y=onehot),
        lambda: AutoProjectedGradientDescent(clf, eps=eps, eps_step=2 * eps, max_iter=50, nb_random_init=1,
                                             batch_size=len(X), verbose=False).generate(X, y=onehot),
        lambda: SquareAttack(clf, eps=eps, max_iter=nq, p_init=0.8, nb_restarts=1, batch_size=len(X),
                             verbose=False).generate(X, y=onehot),
    ]
    ta_runs = [
        lambda: torchattacks.PGD(module, eps=eps, alpha=eps / 4, steps=10, random_start=True)(Xt, yt).detach().numpy(),
        lambda: torchattacks.APGD(module, eps=eps, steps=50, seed=0)(Xt, yt).detach().numpy(),
        lambda: torchattacks.Square(module, eps=eps, n_queries=nq, seed=0)(Xt, yt).detach().numpy(),
    ]
    art_s, art_acc, art_parts = peer(art_runs)
    ta_s, ta_acc, ta_parts = peer(ta_runs)
    print("| run | robust acc | seconds | riskloop faster by |")
    print("|---|---|---|---|")
    print(f"| riskloop (early exit and proofs: {per}) | {res.metrics['ars']:.3f} | {ours_s:.2f} | 1.00x |")
    print(f"| riskloop verify=False (early exit only: {plain_per}) | {plain.metrics['ars']:.3f} | "
          f"{plain_s:.2f} | {plain_s / ours_s:.2f}x |")
    print(f"| ART, all points ({', '.join(f'{p:.2f}' for p in art_parts)} s) | {art_acc:.3f} | "
          f"{art_s:.2f} | {art_s / ours_s:.2f}x |")
    print(f"| torchattacks, all points ({', '.join(f'{p:.2f}' for p in ta_parts)} s) | {ta_acc:.3f} | "
          f"{ta_s:.2f} | {ta_s / ours_s:.2f}x |")


def suite_curve(target: TorchTarget, X: np.ndarray, y: np.ndarray) -> None:
    from riskloop.assess.evasion.suite import evaluate_evasion

    print("\n| proofs | ARS | seconds | per eps: robust acc (proved) | attack seconds | proof seconds |")
    print("|---|---|---|---|---|---|")
    for verify in (True, False):
        t0 = time.perf_counter()
        res = evaluate_evasion(target, X, y, verify=verify, random_state=0)
        seconds = time.perf_counter() - t0
        m = res.metrics
        curve = ", ".join(f"{p['eps'] * 255:.0f}/255: {p['robust_accuracy']:.3f}"
                          + (f" ({p['verified_accuracy']:.3f})" if p["verified_accuracy"] is not None else "")
                          for p in m["curve"])
        attack_s = sum(r["seconds"] for r in m["per_attack"])
        proof_s = sum(r["seconds"] for r in m["verification"]["per_eps"])
        print(f"| {'on' if verify else 'off'} | {m['ars']:.3f} | {seconds:.2f} | {curve} | {attack_s:.2f} | "
              f"{proof_s:.2f} |")


if __name__ == "__main__":
    main()
