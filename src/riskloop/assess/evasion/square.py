"""Square Attack (L-inf): score-based black-box random search with square-shaped updates."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ...errors import InputError
from ...targets.base import ACCESS_LABEL, QueryBudgetExceeded, Target
from .base import AttackOutcome, EvasionAttack

# Iterations (on a 10,000-query scale) after which the square's area fraction p halves.
_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def p_selection(p_init: float, it: int, n_iters: int) -> float:
    """The paper's piecewise-constant schedule of the fraction of pixels changed."""
    it = int(it / n_iters * 10000)
    halvings = sum(it > s for s in _SCHEDULE)
    return p_init / (2**halvings)


def layout(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(channels, height, width) view of an input: images as they are, vectors as 1 x d."""
    if len(shape) >= 3:
        return int(shape[0]), int(shape[-2]), int(np.prod(shape[1:])) // int(shape[-2])
    if len(shape) == 2:
        return 1, int(shape[0]), int(shape[1])
    return 1, 1, int(np.prod(shape))


def margin(proba: np.ndarray, y: np.ndarray, t: np.ndarray | None) -> np.ndarray:
    """Logit margin from probabilities: log p_y - max_{j != y} log p_j (targeted: reversed)."""
    logp = np.log(np.clip(proba, 1e-30, None))
    rows = np.arange(len(proba))
    cls = t if t is not None else y
    own = logp[rows, cls].copy()
    logp[rows, cls] = -np.inf
    other = logp.max(axis=1)
    return other - own if t is not None else own - other


class SquareAttack(EvasionAttack):
    """Random search that changes one random square window per query to ±eps per channel
    (vertical-stripe start; window area shrinks on a fixed schedule); keeps a change only
    when the margin loss decreases. Needs scores (probabilities), not gradients.

    Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box
    adversarial attack via random search", ECCV 2020.
    """

    name = "square"
    access: ClassVar[str] = "black-box"

    def __init__(
        self,
        *,
        eps: float = 8 / 255,
        queries: int = 1000,
        p_init: float = 0.8,
        norm: str = "linf",
        targeted: bool = False,
        batch_size: int = 4096,
        random_state: int | None = 0,
    ) -> None:
        self.eps = float(eps)
        self.queries = int(queries)
        self.p_init = float(p_init)
        self.norm = norm
        self.targeted = targeted
        self.batch_size = batch_size
        self.random_state = random_state
        self._check_common()
        if self.norm != "linf":
            raise InputError("square: only the L-inf version is implemented; use norm='linf'")
        if self.queries < 1 or not 0 < self.p_init <= 1:
            raise InputError("square: queries must be >= 1 and p_init in (0, 1]")

    def _attack(self, target: Target, X: np.ndarray, y: np.ndarray,
                t: np.ndarray | None, scale: np.ndarray | None) -> AttackOutcome:
        if target.access == ACCESS_LABEL:
            raise InputError("square needs probabilities, but the target answers labels only: use hopskipjump")
        outs = [self._batch(target, X[i : i + self.batch_size], y[i : i + self.batch_size],
                            None if t is None else t[i : i + self.batch_size], scale)
                for i in range(0, len(X), max(1, self.batch_size))]
        return AttackOutcome(
            np.concatenate([o.x_adv for o in outs]), np.concatenate([o.success for o in outs]),
            np.concatenate([o.queries for o in outs]), any(o.exhausted for o in outs),
            [n for o in outs for n in o.notes],
        )

    def _batch(self, target: Target, X: np.ndarray, y: np.ndarray,
               t: np.ndarray | None, scale: np.ndarray | None) -> AttackOutcome:
        spec = target.input_spec
        shape = spec._shape()
        c, h, w = layout(shape)
        n = len(X)
        rng = np.random.default_rng(self.random_state)
        lo = spec.lower_array().reshape(1, c, h, w)
        hi = spec.upper_array().reshape(1, c, h, w)
        mut = spec.mutable_mask().reshape(1, c, h, w).astype(np.float64)
        s_arr = np.ones((1, c, h, w)) if scale is None else np.broadcast_to(scale, shape).reshape(1, c, h, w)
        step = self.eps * s_arr * mut  # the ±eps change per feature, in input units
        x0 = X.reshape(n, c, h, w).astype(np.float64)
        queries = np.zeros(n, dtype=np.int64)

        def ask(xs: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            p = target.predict_proba(xs.reshape((len(xs), *shape)).astype(np.float32))
            queries[rows] += 1
            tt = None if t is None else t[rows]
            m = margin(p, y[rows], tt)
            pred = p.argmax(axis=1)
            return m, (pred == tt) if tt is not None else (pred != y[rows])

        stripes = rng.choice([-1.0, 1.0], size=(n, c, 1, w))
        x_best = np.clip(x0 + stripes * step, lo, hi)
        all_rows = np.arange(n)
        try:
            m_best, fooled = ask(x_best, all_rows)
        except QueryBudgetExceeded:
            return AttackOutcome(X.copy(), np.zeros(n, bool), queries, True,
                                 ["square: query budget spent before the first query"])
        exhausted = False
        for it in range(self.queries - 1):
            act = np.flatnonzero(~fooled)
            if len(act) == 0:
                break
            p = p_selection(self.p_init, it, self.queries)
            if h == 1:
                sh, sw = 1, int(min(max(round(p * w), 1), w))
            else:
                side = int(round(np.sqrt(p * h * w)))
                sh = sw = int(min(max(side, 1), h - 1 if h > 1 else 1, w))
            xb, xc = x_best[act], x0[act]
            delta = xb - xc
            new = self._window_update(rng, delta, xc, xb, step, lo, hi, sh, sw)
            x_new = np.clip(xc + new, lo, hi)
            try:
                m_new, hit = ask(x_new, act)
            except QueryBudgetExceeded:
                exhausted = True
                break
            better = m_new < m_best[act]
            upd = act[better]
            x_best[upd] = x_new[better]
            m_best[upd] = m_new[better]
            fooled[act[hit & better]] = True
        notes = ["square: query budget spent before the attack finished"] if exhausted else []
        x_adv = np.where(fooled[:, None, None, None], x_best, x0).reshape(X.shape).astype(np.float32)
        return AttackOutcome(x_adv, fooled, queries, exhausted, notes)

    @staticmethod
    def _window_update(rng: np.random.Generator, delta: np.ndarray, x0: np.ndarray, xb: np.ndarray,
                       step: np.ndarray, lo: np.ndarray, hi: np.ndarray, sh: int, sw: int) -> np.ndarray:
        """Set one random sh x sw window per row to ±eps per channel, retrying windows that
        would not change the current best point (as the reference implementation does)."""
        n, c, h, w = delta.shape
        new = delta.copy()
        pending = np.arange(n)
        for _ in range(10):
            r0 = rng.integers(0, h - sh + 1, size=len(pending))
            c0 = rng.integers(0, w - sw + 1, size=len(pending))
            rows = (np.arange(h)[None, :] >= r0[:, None]) & (np.arange(h)[None, :] < (r0 + sh)[:, None])
            cols = (np.arange(w)[None, :] >= c0[:, None]) & (np.arange(w)[None, :] < (c0 + sw)[:, None])
            win = rows[:, None, :, None] & cols[:, None, None, :]
            signs = rng.choice([-1.0, 1.0], size=(len(pending), c, 1, 1))
            cand = np.where(win, signs * step, delta[pending])
            new[pending] = cand
            moved = np.abs(np.clip(x0[pending] + cand, lo, hi) - xb[pending]) > 1e-7
            same = ~(moved & win).reshape(len(pending), -1).any(axis=1)
            pending = pending[same]
            if len(pending) == 0:
                break
        return new
