"""HopSkipJump: decision-based black-box attack that needs only the predicted label."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ...errors import InputError
from ...targets.base import QueryBudgetExceeded, Target
from .base import AttackOutcome, EvasionAttack, perturbation_norm

GEOMETRIC_STEPS = 25


class _Spent(Exception):
    """Internal: a point (or the target) ran out of queries."""


class HopSkipJump(EvasionAttack):
    """Walks along the decision boundary: estimate the boundary's normal from the signs of
    random probes (Monte-Carlo, with a baseline), jump along it with a geometrically shrinking
    step, and binary-search back to the boundary; repeat until the adversarial point is within
    eps of the original or the per-point query budget is spent. L2 or L-inf.

    Chen, Jordan & Wainwright, "HopSkipJumpAttack: A Query-Efficient Decision-Based Attack",
    IEEE S&P 2020.
    """

    name = "hopskipjump"
    access: ClassVar[str] = "label-only"

    def __init__(
        self,
        *,
        eps: float = 8 / 255,
        norm: str = "linf",
        max_iter: int = 40,
        queries: int = 5000,
        init_eval: int = 100,
        max_eval: int = 1000,
        init_tries: int = 100,
        targeted: bool = False,
        batch_size: int = 64,
        random_state: int | None = 0,
    ) -> None:
        self.eps = float(eps)
        self.norm = norm
        self.max_iter = int(max_iter)
        self.queries = int(queries)
        self.init_eval = int(init_eval)
        self.max_eval = int(max_eval)
        self.init_tries = int(init_tries)
        self.targeted = targeted
        self.batch_size = batch_size
        self.random_state = random_state
        self._check_common()
        if min(self.max_iter, self.queries, self.init_eval, self.max_eval, self.init_tries) < 1:
            raise InputError("hopskipjump: iterations, queries and evaluation counts must be >= 1")

    # -- driver ---------------------------------------------------------------------------
    def _attack(self, target: Target, X: np.ndarray, y: np.ndarray,
                t: np.ndarray | None, scale: np.ndarray | None) -> AttackOutcome:
        spec = target.input_spec
        shape = spec._shape()
        self._rng = np.random.default_rng(self.random_state)
        self._target, self._shape = target, shape
        self._lo = spec.lower_array().reshape(1, -1)
        self._hi = spec.upper_array().reshape(1, -1)
        self._mut = spec.mutable_mask().reshape(1, -1).astype(np.float64)
        self._scale = (np.ones((1, self._lo.shape[1])) if scale is None
                       else np.broadcast_to(scale, shape).reshape(1, -1).astype(np.float64))
        self._d = max(int(self._mut.sum()), 1)
        self._theta = 1.0 / (self._d * np.sqrt(self._d)) if self.norm == "l2" else 1.0 / self._d**2
        self._search = int(np.ceil(np.log2(1.0 / self._theta))) + 1  # binary-search queries
        self._reserve = GEOMETRIC_STEPS + self._search  # worst case of one jump + search
        if self.queries < self._search + 2:
            raise InputError(f"hopskipjump: a budget of {self.queries} queries per point is too small "
                             f"(at least {self._search + 2} for this input size)")
        x_adv = X.copy()
        success = np.zeros(len(X), dtype=bool)
        self._used = np.zeros(len(X), dtype=np.int64)
        self._exhausted = False
        pool = X.reshape(len(X), -1).astype(np.float64)
        for lo in range(0, len(X), max(1, self.batch_size)):
            rows = np.arange(lo, min(lo + self.batch_size, len(X)))
            xa, ok = self._batch(pool[rows], y[rows], None if t is None else t[rows], rows, pool)
            x_adv[rows] = xa.reshape((len(rows), *shape)).astype(np.float32)
            success[rows] = ok
            if self._exhausted:
                break
        notes = ["hopskipjump: query budget spent before the attack finished"] if self._exhausted else []
        return AttackOutcome(x_adv, success, self._used.copy(), self._exhausted, notes)

    def _is_adv(self, xs: np.ndarray, y: np.ndarray, t: np.ndarray | None, rows: np.ndarray) -> np.ndarray:
        """Label-only oracle; charges one query per probe to the point it belongs to."""
        if len(xs) == 0:
            return np.zeros(0, dtype=bool)
        try:
            p = self._target.predict_proba(xs.reshape((len(xs), *self._shape)).astype(np.float32))
        except QueryBudgetExceeded:
            self._exhausted = True
            raise _Spent() from None
        np.add.at(self._used, rows, 1)
        pred = p.argmax(axis=1)
        return pred == t if t is not None else pred != y

    def _dist(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return perturbation_norm(a - b, self.norm, self._scale[0])

    def _batch(self, x0: np.ndarray, y: np.ndarray, t: np.ndarray | None,
               rows: np.ndarray, pool: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(x0)
        best = x0.copy()
        ok = np.zeros(n, dtype=bool)
        try:
            start, found = self._initial(x0, y, t, rows, pool)
            act = np.flatnonzero(found)
            if len(act) == 0:
                return best, ok
            cur = self._binary_search(x0[act], start[act], y[act], _sub(t, act), rows[act])
            best[act] = cur
            dist = self._dist(cur, x0[act])
            ok[act] = dist <= self.eps * (1 + 1e-9)
            for it in range(1, self.max_iter + 1):
                room = self.queries - self._used[rows[act]] - self._reserve
                live = np.flatnonzero(~ok[act] & (room >= 1))
                if len(live) == 0:
                    break
                idx = act[live]
                x_new = self._iterate(x0[idx], best[idx], dist[live], y[idx], _sub(t, idx), rows[idx], it)
                best[idx] = x_new
                dist[live] = self._dist(x_new, x0[idx])
                ok[idx] = dist[live] <= self.eps * (1 + 1e-9)
        except _Spent:
            pass
        return np.where(ok[:, None], best, x0), ok

    # -- steps ----------------------------------------------------------------------------
    def _initial(self, x0, y, t, rows, pool):  # type: ignore[no-untyped-def]
        """A starting adversarial point: uniform noise in the valid range (frozen features
        kept), or for targeted attacks a point of the batch already predicted as the target."""
        n = len(x0)
        start = x0.copy()
        found = np.zeros(n, dtype=bool)
        if t is not None:
            others = pool[np.isin(np.arange(len(pool)), rows, invert=True)] if len(pool) > n else pool
            preds = self._target.predict_proba(
                others.reshape((len(others), *self._shape)).astype(np.float32)).argmax(1)
            for i in range(n):
                cand = np.flatnonzero(preds == t[i])
                if len(cand):
                    start[i] = np.where(self._mut[0] > 0, others[cand[0]], x0[i])
                    found[i] = True
        lo, hi = self._lo, self._hi
        tries = min(self.init_tries, self.queries - self._search)
        for _ in range(tries):
            todo = np.flatnonzero(~found)
            if len(todo) == 0:
                break
            noise = self._rng.uniform(lo, hi, size=(len(todo), lo.shape[1]))
            cand = np.where(self._mut > 0, noise, x0[todo])
            adv = self._is_adv(cand, y[todo], _sub(t, todo), rows[todo])
            start[todo[adv]] = cand[adv]
            found[todo[adv]] = True
        return start, found

    def _blend(self, x0: np.ndarray, xa: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        if self.norm == "l2":
            return (1 - alpha[:, None]) * x0 + alpha[:, None] * xa
        radius = self._dist(xa, x0)[:, None] * alpha[:, None] * self._scale
        return np.clip(xa, x0 - radius, x0 + radius)

    def _binary_search(self, x0, xa, y, t, rows):  # type: ignore[no-untyped-def]
        """Shrink towards x0 while staying adversarial, to precision theta (fraction of the way)."""
        low = np.zeros(len(x0))
        high = np.ones(len(x0))
        for _ in range(self._search):
            open_ = np.flatnonzero(high - low > self._theta)
            if len(open_) == 0:
                break
            mid = (low[open_] + high[open_]) / 2
            adv = self._is_adv(self._blend(x0[open_], xa[open_], mid), y[open_], _sub(t, open_), rows[open_])
            high[open_[adv]] = mid[adv]
            low[open_[~adv]] = mid[~adv]
        return self._blend(x0, xa, high)

    def _iterate(self, x0, xb, dist, y, t, rows, it):  # type: ignore[no-untyped-def]
        n, d = xb.shape
        width = float(np.mean((self._hi - self._lo) / self._scale))
        if it == 1:
            delta = np.full(n, 0.1 * width)
        elif self.norm == "l2":
            delta = np.sqrt(self._d) * self._theta * dist
        else:
            delta = self._d * self._theta * dist
        k = int(min(self.init_eval * np.sqrt(it), self.max_eval))
        k = max(1, min(k, int(np.min(self.queries - self._used[rows] - self._reserve))))
        # Monte-Carlo estimate of the boundary normal at xb, in scaled units
        if self.norm == "l2":
            rv = self._rng.standard_normal((n, k, d))
        else:
            rv = self._rng.uniform(-1, 1, size=(n, k, d))
        rv *= self._mut[None]
        rv /= np.linalg.norm(rv, axis=2, keepdims=True) + 1e-12
        probes = np.clip(xb[:, None] + delta[:, None, None] * rv * self._scale[None], self._lo, self._hi)
        rv = (probes - xb[:, None]) / (delta[:, None, None] * self._scale[None])
        phi = self._is_adv(probes.reshape(n * k, d), np.repeat(y, k), None if t is None else np.repeat(t, k),
                           np.repeat(rows, k)).reshape(n, k).astype(np.float64) * 2 - 1
        mean = phi.mean(axis=1, keepdims=True)
        centred = np.where(np.abs(mean) == 1, phi, phi - mean)
        grad = (centred[:, :, None] * rv).mean(axis=1)
        grad /= np.linalg.norm(grad, axis=1, keepdims=True) + 1e-12
        update = grad if self.norm == "l2" else np.sign(grad)
        # geometric search for a step that stays adversarial
        size = dist / np.sqrt(it)
        cand = xb.copy()
        pending = np.arange(n)
        for _ in range(GEOMETRIC_STEPS):
            trial = np.clip(xb[pending] + size[pending, None] * update[pending] * self._scale, self._lo, self._hi)
            adv = self._is_adv(trial, y[pending], _sub(t, pending), rows[pending])
            cand[pending[adv]] = trial[adv]
            pending = pending[~adv]
            size[pending] /= 2
            if len(pending) == 0:
                break
        return self._binary_search(x0, cand, y, t, rows)


def _sub(t: np.ndarray | None, idx: np.ndarray) -> np.ndarray | None:
    return None if t is None else t[idx]
