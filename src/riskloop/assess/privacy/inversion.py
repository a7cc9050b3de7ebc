"""Model inversion: reconstruct a representative input of a class from the model alone.

:class:`MIFace` is the gradient-descent attack of Fredrikson, Jha and Ristenpart (2015),
"Model Inversion Attacks that Exploit Confidence Information and Basic Countermeasures"
(CCS '15): starting from a blank input, descend on ``1 - p(c | x)`` within the valid input
range. How much the reconstruction reveals is measured against real training samples of
that class, with random inputs of the same range as the baseline: a reconstruction that is
much closer to some training sample of class ``c`` than random inputs are, and whose nearest
training sample belongs to ``c``, leaks what class ``c`` looks like.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ...errors import InputError
from ...findings import AssessmentResult, Finding, Severity
from ...targets.base import ACCESS_WHITE, Target, check_data, is_white_box
from ._png import image_grid, write_png

log = logging.getLogger(__name__)
THREAT = "model-inversion"
LOSSES = ("one-minus-p", "cross-entropy")
MSG_NEEDS_WHITE_BOX = (
    "model inversion (MI-Face) needs gradients, but the target is {access}: assess a torch "
    "model registered with its weights (white-box), or skip inversion"
)


def _rmse_to_nearest(a: np.ndarray, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``a``, the RMSE to its nearest row of ``pool`` and that row's index."""
    a2 = (a * a).sum(axis=1)[:, None]
    p2 = (pool * pool).sum(axis=1)[None, :]
    d2 = np.maximum(a2 + p2 - 2.0 * a @ pool.T, 0.0) / a.shape[1]
    idx = d2.argmin(axis=1)
    return np.sqrt(d2[np.arange(len(a)), idx]), idx


class MIFace:
    """Gradient-based model inversion of one representative per class (Fredrikson et al. 2015).

    ``X, y`` passed to :meth:`run` are the training samples the reconstructions are compared
    with; the attack itself uses only the model's gradients.

    Examples::

        inv = MIFace(steps=300, lr=1.0, random_state=0)
        result = inv.run(target, X_train, y_train)
        inv.reconstructions_.shape        # (classes, *input_shape)
    """

    name = "mi-face"
    threats = (THREAT,)
    access = ACCESS_WHITE
    requires = ("torch",)

    def __init__(
        self,
        *,
        steps: int = 300,
        lr: float = 1.0,
        loss: str = "one-minus-p",
        start: str = "lower",
        n_random: int = 100,
        classes: list[int] | None = None,
        random_state: int = 0,
    ) -> None:
        if steps < 1:
            raise InputError(f"bad steps {steps}: at least one gradient step")
        if lr <= 0:
            raise InputError(f"bad lr {lr}: must be positive")
        if loss not in LOSSES:
            raise InputError(f"unknown loss '{loss}': choose one of {', '.join(LOSSES)}")
        if start not in ("lower", "middle"):
            raise InputError(f"unknown start '{start}': choose 'lower' or 'middle'")
        self.steps = int(steps)
        self.lr = float(lr)
        self.loss = loss
        self.start = start
        self.n_random = int(n_random)
        self.classes = classes
        self.random_state = int(random_state)

    def get_params(self) -> dict[str, Any]:
        return {"steps": self.steps, "lr": self.lr, "loss": self.loss, "start": self.start,
                "n_random": self.n_random, "classes": self.classes,
                "random_state": self.random_state}

    def _invert(self, target: Any, c: int, lo: torch.Tensor, hi: torch.Tensor) -> tuple[np.ndarray, float]:
        x0 = lo.clone() if self.start == "lower" else (lo + hi) / 2
        x = x0.unsqueeze(0).clone().requires_grad_(True)
        best, best_cost = x.detach().clone(), np.inf
        with target.attack_mode():
            for _ in range(self.steps):
                logits = target.logits(x)
                if self.loss == "one-minus-p":
                    cost = 1.0 - torch.softmax(logits, dim=1)[0, c]
                else:
                    cost = -torch.log_softmax(logits, dim=1)[0, c]
                (g,) = torch.autograd.grad(cost, x)
                value = float(cost.detach())
                if value < best_cost:
                    best_cost, best = value, x.detach().clone()
                with torch.no_grad():
                    x -= self.lr * g
                    x.copy_(torch.maximum(torch.minimum(x, hi), lo))
            with torch.no_grad():
                p = float(torch.softmax(target.logits(best), dim=1)[0, c])
        target.queries += self.steps
        return best[0].cpu().numpy(), p

    def run(self, target: Target, X: Any, y: Any) -> AssessmentResult:
        if not is_white_box(target):
            raise InputError(MSG_NEEDS_WHITE_BOX.format(access=getattr(target, "access", "unknown")))
        spec = target.input_spec
        Xc, yc = check_data(target, X, y, where="inversion reference data")
        if not spec.bounded:
            spec = spec.complete(Xc)
        lo_np, hi_np = spec.lower_array(), spec.upper_array()
        lo = torch.as_tensor(lo_np, dtype=torch.float32)
        hi = torch.as_tensor(hi_np, dtype=torch.float32)
        wanted = list(range(len(target.classes))) if self.classes is None else list(self.classes)
        present = [c for c in wanted if np.any(yc == c)]
        if not present:
            raise InputError("model inversion needs training samples of at least one class to compare with")
        torch.manual_seed(self.random_state)
        recs, confs = [], []
        for c in present:
            rec, p = self._invert(target, c, lo, hi)
            recs.append(rec)
            confs.append(p)
        self.reconstructions_ = np.stack(recs)
        self.classes_ = present
        flat = Xc.reshape(len(Xc), -1).astype(np.float64)
        rng = np.random.default_rng(self.random_state)
        rand = rng.uniform(lo_np.ravel(), hi_np.ravel(), size=(self.n_random, flat.shape[1]))
        per_class = []
        for c, rec, p in zip(present, recs, confs, strict=True):
            pool = flat[yc == c]
            d_rec, _ = _rmse_to_nearest(rec.reshape(1, -1).astype(np.float64), pool)
            d_rand, _ = _rmse_to_nearest(rand, pool)
            _, nn_all = _rmse_to_nearest(rec.reshape(1, -1).astype(np.float64), flat)
            per_class.append({
                "class": target.classes[c], "confidence": p, "rmse_to_nearest": float(d_rec[0]),
                "random_rmse_to_nearest": float(d_rand.mean()),
                "nearest_is_same_class": bool(yc[nn_all[0]] == c),
            })
        rmse = float(np.mean([r["rmse_to_nearest"] for r in per_class]))
        rand_rmse = float(np.mean([r["random_rmse_to_nearest"] for r in per_class]))
        gain = 1.0 - rmse / rand_rmse if rand_rmse > 0 else 0.0
        match = float(np.mean([r["nearest_is_same_class"] for r in per_class]))
        self.metrics_ = {
            "inversion_rmse": rmse, "inversion_random_rmse": rand_rmse,
            "inversion_gain": gain, "inversion_class_match": match,
            "inversion_confidence": float(np.mean(confs)), "inversion_by_class": per_class,
        }
        return AssessmentResult(suite="privacy", metrics=dict(self.metrics_),
                                findings=[self._finding()], params={"inversion": self.get_params()})

    def _finding(self) -> Finding:
        m = self.metrics_
        gain, match = m["inversion_gain"], m["inversion_class_match"]
        if match >= 0.9 and gain >= 0.4:
            sev = Severity.HIGH
        elif match >= 0.5 and gain >= 0.2:
            sev = Severity.MEDIUM
        elif gain >= 0.1:
            sev = Severity.LOW
        else:
            sev = Severity.INFO
        return Finding(
            threat_id=THREAT, severity=sev,
            title=f"MI-Face reconstructions are {gain:.0%} closer to training samples than random inputs",
            detail=(f"Reconstructions of {len(self.classes_)} classes: RMSE to the nearest training "
                    f"sample of the class {m['inversion_rmse']:.3f} (random inputs "
                    f"{m['inversion_random_rmse']:.3f}); the nearest training sample is of the "
                    f"attacked class for {match:.0%} of classes."),
            metric="inversion_gain", value=gain,
            evidence={k: m[k] for k in ("inversion_rmse", "inversion_random_rmse",
                                        "inversion_class_match", "inversion_confidence")},
        )

    def save_evidence(self, folder: Path, stem: str = "mi-face") -> dict[str, str]:
        """Write the reconstructions: a PNG grid for image inputs, always a ``.npy`` array."""
        folder.mkdir(parents=True, exist_ok=True)
        out: dict[str, str] = {}
        npy = folder / f"{stem}-mi-face.npy"
        with open(npy, "wb") as fh:
            np.save(fh, self.reconstructions_.astype(np.float32), allow_pickle=False)
        out["inversion_array"] = str(npy)
        recs = self.reconstructions_
        images = recs.mean(axis=1) if recs.ndim == 4 else (recs if recs.ndim == 3 else None)
        if images is not None:
            lo, hi = float(images.min()), float(images.max())
            scaled = [(im - lo) / (hi - lo) if hi > lo else im * 0 for im in images]
            scale = max(1, 64 // max(images.shape[1:]))
            png = write_png(folder / f"{stem}-mi-face.png",
                            image_grid(scaled, columns=min(10, len(scaled)), scale=scale))
            out["inversion_image"] = str(png)
        return out
