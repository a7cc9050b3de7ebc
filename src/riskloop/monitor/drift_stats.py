"""Vectorised drift statistics: the maths behind :mod:`riskloop.monitor.drift`.

Binned statistics work on count matrices of shape ``(columns, bins)`` (columns with fewer
bins are padded and masked), so one call scores every column. Logarithms are natural
(nats); pass ``log_base=2`` for bits. Order statistics (KS, Wasserstein) compare a sorted
window with the profile's sorted reference sample in ``O(m log n)`` after the sort, using
the block structure of the reference CDF (see ``docs/monitoring.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import special, stats

EVIDENTLY_FLOOR = 1e-4


@dataclass
class BinnedStats:
    psi: np.ndarray
    kl: np.ndarray
    js: np.ndarray
    chi2: np.ndarray
    chi2_p: np.ndarray


def fill_zeros(shares: np.ndarray, valid: np.ndarray, *, epsilon: float | None) -> np.ndarray:
    """Replace empty-bin shares so logarithms stay finite.

    ``epsilon`` given: every empty valid bin gets ``epsilon``. ``None``: Evidently's rule per
    row, ``min_nonzero / 1e6`` if the smallest non-zero share is at most 1e-4, else 1e-4.
    """
    out = shares.copy()
    empty = valid & (shares == 0)
    if epsilon is not None:
        out[empty] = epsilon
        return out
    masked = np.where(valid & (shares > 0), shares, np.inf)
    smallest = masked.min(axis=1, keepdims=True)
    fill = np.where(smallest <= EVIDENTLY_FLOOR, smallest / 1e6, EVIDENTLY_FLOOR)
    return np.where(empty, np.broadcast_to(fill, shares.shape), out)


def binned_stats(
    ref_counts: np.ndarray,
    cur_counts: np.ndarray,
    valid: np.ndarray,
    *,
    epsilon: float | None = 1e-4,
    log_base: float = math.e,
) -> BinnedStats:
    """PSI, KL(ref||cur), Jensen-Shannon distance and the chi-square homogeneity test.

    - ``PSI = sum (r - c) ln(r / c)`` on zero-filled shares (no renormalisation);
    - ``KL = sum r' ln(r' / c')`` on zero-filled shares renormalised to 1 (as scipy's entropy);
    - ``JS = sqrt((KL(r||m) + KL(c||m)) / 2)``, ``m = (r + c) / 2``, raw shares, no fill;
    - chi-square: Pearson's test of homogeneity on the 2 x k table of raw counts, dof = k - 1
      over bins with any count.
    """
    ref = ref_counts.astype(np.float64)
    cur = cur_counts.astype(np.float64)
    n_ref = ref.sum(axis=1, keepdims=True)
    n_cur = cur.sum(axis=1, keepdims=True)
    r = ref / np.maximum(n_ref, 1)
    c = cur / np.maximum(n_cur, 1)
    rf = fill_zeros(r, valid, epsilon=epsilon)
    cf = fill_zeros(c, valid, epsilon=epsilon)
    safe_r = np.where(valid, rf, 1.0)
    safe_c = np.where(valid, cf, 1.0)
    log_ratio = np.log(safe_r / safe_c)
    psi = np.sum(np.where(valid, (safe_r - safe_c) * log_ratio, 0.0), axis=1)
    rn = safe_r / np.sum(np.where(valid, safe_r, 0.0), axis=1, keepdims=True)
    cn = safe_c / np.sum(np.where(valid, safe_c, 0.0), axis=1, keepdims=True)
    kl = np.sum(np.where(valid, rn * np.log(rn / cn), 0.0), axis=1) / math.log(log_base)
    m = (r + c) / 2.0
    js2 = np.sum(special.rel_entr(r, m) + special.rel_entr(c, m), axis=1) / math.log(log_base)
    js = np.sqrt(np.maximum(js2, 0.0) / 2.0)
    total = ref + cur
    n = n_ref + n_cur
    used = total > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        e_ref = total * n_ref / n
        e_cur = total * n_cur / n
        terms = (ref - e_ref) ** 2 / e_ref + (cur - e_cur) ** 2 / e_cur
    chi2 = np.sum(np.where(used, terms, 0.0), axis=1)
    dof = used.sum(axis=1) - 1
    chi2_p = np.where(dof > 0, stats.chi2.sf(chi2, np.maximum(dof, 1)), 1.0)
    return BinnedStats(psi=psi, kl=kl, js=js, chi2=chi2, chi2_p=chi2_p)


def bin_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in the bins ``(-inf, e0), [e0, e1), ..., [e_last, inf)``."""
    idx = np.searchsorted(edges, values, side="right")
    return np.bincount(idx, minlength=edges.size + 1)


def sorted_hist(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """``np.histogram(values, edges)`` for already sorted values, in O(bins log n)."""
    left = np.searchsorted(sorted_values, edges[:-1], side="left")
    right = np.searchsorted(sorted_values, edges[-1:], side="right")
    return np.diff(np.concatenate([left, right]))


def sturges_edges(lo: float, hi: float, n: int) -> np.ndarray:
    """``np.histogram_bin_edges(data, bins="sturges")`` from the data's min, max and size."""
    first, last = float(lo), float(hi)
    if first == last:
        first, last = first - 0.5, last + 0.5
    ptp = float(hi) - float(lo)
    if ptp > 0:
        width = ptp / (np.log2(n) + 1.0)
        n_bins = int(np.ceil(ptp / width))
    else:
        n_bins = 1
    return np.linspace(first, last, n_bins + 1, endpoint=True)


def ks_wasserstein(
    ref_values: np.ndarray,
    ref_cum: np.ndarray,
    cur_sorted: np.ndarray,
    *,
    want_w: bool = True,
) -> tuple[float, float]:
    """Two-sample KS statistic and 1-Wasserstein distance between a reference sample and a
    sorted window.

    ``ref_values`` are the distinct reference values ``u_0 < ... < u_{K-1}`` and ``ref_cum``
    how many reference values are ``<= u_j``. On ``[u_j, u_{j+1})`` the reference CDF is the
    constant ``a_j``, and the window CDF is non-decreasing, so ``|a_j - F_cur|`` peaks at the
    block's ends (KS) and changes sign at most once, at the first window value where
    ``F_cur >= a_j`` (Wasserstein). Integrals of ``F_cur`` come from
    ``G(x) = (k(x) x - S_k(x)) / n`` with ``k(x) = #cur <= x`` and ``S_k`` a prefix sum.
    Both results equal scipy's ``ks_2samp`` statistic and ``wasserstein_distance`` on the
    same samples.
    """
    n = cur_sorted.size
    m = int(ref_cum[-1])
    u = ref_values
    a = ref_cum / m
    k_left = np.searchsorted(cur_sorted, u, side="left")
    k_right = np.searchsorted(cur_sorted, u, side="right")
    cands = [np.array([k_left[0] / n, 1.0 - k_right[-1] / n])]
    if u.size > 1:
        aj = a[:-1]
        cands.append(np.abs(aj - k_right[:-1] / n))
        cands.append(np.abs(aj - k_left[1:] / n))
    d = float(max(c.max() for c in cands))
    if not want_w:
        return d, float("nan")
    prefix = np.empty(n + 1)
    prefix[0] = 0.0
    np.cumsum(cur_sorted, out=prefix[1:])

    # G(x) = (k x - S_k) / n holds for any k between #cur < x and #cur <= x (tied values
    # add x - x = 0), so the counts already found serve every evaluation point.
    def g(x: np.ndarray, k: np.ndarray) -> np.ndarray:
        return (k * x - prefix[k]) / n

    mean_c = prefix[-1] / n
    w = g(u[:1], k_right[:1])[0] + (mean_c - u[-1] + g(u[-1:], k_right[-1:])[0])
    if u.size > 1:
        lo, hi, aj = u[:-1], u[1:], a[:-1]
        k_lo, k_hi = k_right[:-1], k_right[1:]
        q = -((-ref_cum[:-1] * n) // m)  # ceil(a_j * n), exact in integers
        x_q = cur_sorted[q - 1]  # the first window value with F_cur >= a_j
        xstar = np.clip(x_q, lo, hi)
        k_x = np.where(x_q < lo, k_lo, np.where(x_q > hi, k_hi, q))
        g_lo, g_x, g_hi = g(lo, k_lo), g(xstar, k_x), g(hi, k_hi)
        w += float(np.sum(aj * (xstar - lo) - (g_x - g_lo) + (g_hi - g_x) - aj * (hi - xstar)))
    return d, float(w)


def ks_pvalue(d: np.ndarray, n_ref: np.ndarray, n_cur: np.ndarray) -> np.ndarray:
    """Two-sided asymptotic p-value of the two-sample KS test (scipy's ``method="asymp"``):
    the Kolmogorov-Smirnov distribution ``kstwo`` at ``round(n m / (n + m))``."""
    en = np.round(n_ref * n_cur / (n_ref + n_cur))
    return np.clip(stats.kstwo.sf(d, np.maximum(en, 1)), 0.0, 1.0)
