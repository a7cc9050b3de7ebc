"""Data drift against a frozen reference profile, through a security lens.

Paper 5.1(4) and 2.3.3: "a spike in low-confidence predictions or a subtle shift in input
statistics" may be an attack in progress, so the Monitor phase watches input statistics
against the reference the model was validated on. A window is scored against a
:class:`~riskloop.monitor.profile.ReferenceProfile` with PSI, KL, Jensen-Shannon and
chi-square on frozen reference-quantile bins, and KS and normalised Wasserstein on the
reference sample; every statistic is computed for all columns in one vectorised pass.

``binning="evidently"`` reproduces Evidently's conventions instead (Sturges equal-width bins
over reference and window, zero shares set to 1e-4 or min/1e6, per-value bins for columns
with at most 20 distinct reference values), so numbers can be compared one to one.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..errors import InputError
from ..findings import AssessmentResult, Finding, Severity
from .drift_stats import (
    bin_counts,
    binned_stats,
    ks_pvalue,
    ks_wasserstein,
    sorted_hist,
    sturges_edges,
)
from .profile import (
    CategoricalProfile,
    NumericProfile,
    ReferenceProfile,
    category_strings,
    is_numeric_dtype,
)
from .tables import TableLike, as_frame

log = logging.getLogger(__name__)

BINNED = ("psi", "kl", "js", "chi2")
ORDERED = ("ks", "wasserstein")
STATS = BINNED + ORDERED
P_VALUE_STATS = ("ks", "chi2")
# Defaults and their reasons are in docs/monitoring.md.
DEFAULT_THRESHOLDS: dict[str, float] = {
    "psi": 0.1, "kl": 0.1, "js": 0.1, "wasserstein": 0.1, "ks": 0.05, "chi2": 0.05,
}
BINNINGS = ("quantile", "evidently")
EVIDENTLY_DISCRETE = 20
UNSEEN = "(unseen)"


@dataclass
class FeatureDrift:
    """Drift of one column. Statistics that do not apply (or were not asked for) are None."""

    name: str
    kind: str
    count_ref: int
    count_cur: int
    missing_ref: float
    missing_cur: float
    bins: int
    psi: float | None = None
    kl: float | None = None
    js: float | None = None
    chi2: float | None = None
    chi2_p: float | None = None
    ks: float | None = None
    ks_p: float | None = None
    wasserstein: float | None = None
    mean_shift: float | None = None
    unseen: list[str] = field(default_factory=list)
    stat: str = "psi"
    value: float | None = None
    threshold: float = 0.1
    drifted: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DriftReport:
    """All columns of one window, and the dataset-level verdict."""

    features: list[FeatureDrift]
    binning: str
    stat: str
    drift_share: float
    rows: int
    warnings: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> list[str]:
        return [f.name for f in self.features if f.drifted]

    @property
    def share_drifted(self) -> float:
        return len(self.drifted) / max(len(self.features), 1)

    @property
    def dataset_drift(self) -> bool:
        return bool(self.features) and self.share_drifted >= self.drift_share

    def feature(self, name: str) -> FeatureDrift:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def as_dict(self) -> dict[str, Any]:
        return {"binning": self.binning, "stat": self.stat, "rows": self.rows,
                "drift_share": self.drift_share, "share_drifted": self.share_drifted,
                "dataset_drift": self.dataset_drift, "drifted": self.drifted,
                "warnings": list(self.warnings),
                "features": [f.as_dict() for f in self.features]}

    def to_result(self) -> AssessmentResult:
        """The report as an assessment result, with a finding when any column drifted."""
        findings = []
        if self.drifted:
            worst = sorted((f for f in self.features if f.drifted),
                           key=lambda f: -(f.psi or 0.0))[:10]
            findings.append(Finding(
                threat_id="evasion",
                severity=Severity.MEDIUM if self.dataset_drift else Severity.LOW,
                title=f"Input drift in {len(self.drifted)} of {len(self.features)} features",
                detail=("Live inputs no longer match the frozen reference. Benign drift and "
                        "an adversarial input campaign look alike here: check the clients "
                        "behind the window before retraining on it (poisoning risk)."),
                metric="share_drifted", value=self.share_drifted,
                evidence={"stat": self.stat, "features": [
                    {"name": f.name, "psi": f.psi, "value": f.value} for f in worst]},
            ))
        return AssessmentResult(
            suite="drift", metrics={k: v for k, v in self.as_dict().items() if k != "warnings"},
            findings=findings, warnings=list(self.warnings),
            params={"binning": self.binning, "stat": self.stat, "drift_share": self.drift_share},
        )


def _numeric_matrix(current: TableLike, names: list[str]) -> np.ndarray:
    if isinstance(current, np.ndarray) and current.ndim == 2 and all(
        n == f"x{i}" for i, n in enumerate(names)
    ) and current.shape[1] == len(names):
        return np.asarray(current, dtype=np.float64)
    frame = as_frame(current)
    for n in names:
        if not is_numeric_dtype(frame[n]):
            raise InputError(
                f"column '{n}' is numeric in the reference but holds {frame[n].dtype} values in "
                "the current data: fix the column or profile it as categorical"
            )
    return frame[names].to_numpy(dtype=np.float64, na_value=np.nan)


class DataDrift:
    """Score windows of live data against a frozen reference profile (paper 5.1(4), 2.3.3).

    ``stat`` decides whether a column drifted: distances (psi, kl, js, wasserstein) drift at
    ``value >= threshold``, tests (ks, chi2) at ``p < threshold``; ks and wasserstein do not
    apply to categorical columns, which then use psi. The dataset drifted when at least
    ``drift_share`` of the columns did. ``epsilon`` replaces empty-bin shares in quantile
    mode; logarithms are natural unless ``log_base`` says otherwise (KL and JS; PSI is
    always in nats so its usual thresholds apply).
    """

    name: ClassVar[str] = "data-drift"
    threats: ClassVar[tuple[str, ...]] = ("evasion", "data-poisoning")
    access: ClassVar[str] = "black-box"

    def __init__(
        self,
        *,
        binning: str = "quantile",
        stat: str = "psi",
        threshold: float | None = None,
        stats: tuple[str, ...] = STATS,
        epsilon: float = 1e-4,
        log_base: float = math.e,
        drift_share: float = 0.5,
    ) -> None:
        if binning not in BINNINGS:
            raise InputError(f"unknown binning '{binning}': use one of {', '.join(BINNINGS)}")
        if stat not in STATS:
            raise InputError(f"unknown drift statistic '{stat}': use one of {', '.join(STATS)}")
        bad = [s for s in stats if s not in STATS]
        if bad:
            raise InputError(f"unknown statistic(s) {bad}: use any of {', '.join(STATS)}")
        if not 0 < epsilon < 0.01:
            raise InputError(f"epsilon must be in (0, 0.01), got {epsilon}")
        if log_base <= 1:
            raise InputError(f"log_base must be > 1, got {log_base}")
        self.binning = binning
        self.stat = stat
        self.threshold = DEFAULT_THRESHOLDS[stat] if threshold is None else float(threshold)
        self.stats = tuple(dict.fromkeys((*stats, stat)))
        self.epsilon = epsilon
        self.log_base = log_base
        self.drift_share = drift_share

    # -- public API ---------------------------------------------------------------------
    def run(self, profile: ReferenceProfile, current: TableLike) -> DriftReport:
        """Score ``current`` (a DataFrame, array or mapping with the profile's columns)."""
        frame_cols = self._columns_of(current)
        missing = [c for c in profile.columns if c not in frame_cols]
        if missing:
            raise InputError(
                f"current data lacks column(s) {missing[:10]} of the reference profile "
                f"(it has {sorted(frame_cols)[:10]}): score data with the same columns"
            )
        warnings: list[str] = []
        if self.binning == "evidently" and any(
            not c.exact for c in profile.columns.values() if isinstance(c, NumericProfile)
        ):
            warnings.append("reference profile holds a quantile sketch, not every value: "
                            "Evidently-mode numbers are approximate")
        num = profile.numeric
        need = set(self.stats)
        feats: list[FeatureDrift] = []
        binned_feats: list[FeatureDrift] = []
        ref_rows: list[np.ndarray] = []
        cur_rows: list[np.ndarray] = []
        n_rows = 0
        if num:
            X = _numeric_matrix(current, num)
            n_rows = X.shape[0]
            feats += self._numeric(profile, num, X, ref_rows, cur_rows)
            if need & set(BINNED):
                binned_feats += feats
        cats = profile.categorical
        if cats:
            frame = as_frame(current)
            n_rows = len(frame)
            if self.stat in ORDERED:
                need.add("psi")  # the fallback statistic of categorical columns
            for name in cats:
                col: CategoricalProfile = profile.columns[name]  # type: ignore[assignment]
                feats.append(self._categorical(col, frame[name], ref_rows, cur_rows))
                binned_feats.append(feats[-1])
        if n_rows == 0:
            raise InputError("the current window has no rows: nothing to score")
        if binned_feats:
            self._fill_binned(binned_feats, ref_rows, cur_rows, need)
        order = {name: i for i, name in enumerate(profile.columns)}
        feats.sort(key=lambda f: order[f.name])  # the reference's column order
        for f in feats:
            self._decide(f)
        noise = self._null_psi(feats)
        if noise is not None:
            warnings.append(noise)
        report = DriftReport(features=feats, binning=self.binning, stat=self.stat,
                             drift_share=self.drift_share, rows=n_rows, warnings=warnings)
        self.report_ = report
        log.info("drift: %d/%d features drifted (%s)", len(report.drifted), len(feats), self.stat)
        return report

    # -- internals ----------------------------------------------------------------------
    @staticmethod
    def _columns_of(current: TableLike) -> set[str]:
        if isinstance(current, np.ndarray) and current.ndim == 2:
            return {f"x{i}" for i in range(current.shape[1])}
        return {str(c) for c in as_frame(current).columns}

    def _numeric(self, profile: ReferenceProfile, names: list[str], X: np.ndarray,
                 ref_rows: list[np.ndarray], cur_rows: list[np.ndarray]) -> list[FeatureDrift]:
        ordered = any(s in self.stats for s in ORDERED)
        binned = any(s in self.stats for s in BINNED)
        # One pass gives the means and tells whether every value is finite (a NaN or inf
        # makes its column's mean non-finite); a strided mean per column would be slow.
        means = X.mean(axis=0) if X.shape[0] else np.zeros(X.shape[1])
        finite_all = bool(np.isfinite(means).all())
        if not finite_all:
            means = None
        feats = []
        for j, name in enumerate(names):
            col: NumericProfile = profile.columns[name]  # type: ignore[assignment]
            x = X[:, j]
            if not finite_all:
                x = x[np.isfinite(x)]
            n = int(x.size)
            if n == 0:
                raise InputError(f"column '{name}' has no finite values in the current window")
            mean = float(means[j]) if means is not None else float(x.mean())
            f = FeatureDrift(
                name=name, kind="numeric", count_ref=col.count, count_cur=n,
                missing_ref=col.missing / max(col.count + col.missing, 1),
                missing_cur=1.0 - n / X.shape[0], bins=0,
                mean_shift=(mean - col.mean) / max(col.std, 1e-3),
            )
            if binned:
                r, c = self._numeric_counts(col, x)
                ref_rows.append(r)
                cur_rows.append(c)
                f.bins = int(r.size)
            if ordered:
                xs = np.sort(x)  # contiguous, unlike np.sort(X, axis=0)'s columns
                values, cum = col.unique_cum
                d, w = ks_wasserstein(values, cum, xs, want_w="wasserstein" in self.stats)
                if "ks" in self.stats:
                    f.ks = d
                    f.ks_p = float(ks_pvalue(np.array(d), np.array(col.count), np.array(n)))
                if "wasserstein" in self.stats:
                    f.wasserstein = w / max(col.std, 0.001)
            feats.append(f)
        return feats

    def _numeric_counts(self, col: NumericProfile, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.binning == "quantile":
            return col.counts.astype(np.float64), bin_counts(x, col.edges)
        scale = col.count / col.sample.size
        if col.n_unique > EVIDENTLY_DISCRETE:
            edges = sturges_edges(min(col.min, x.min()), max(col.max, x.max()), col.count + x.size)
            ref = sorted_hist(col.sample, edges) * scale
            return ref, np.histogram(x, edges)[0]
        ref_vals, ref_cnt = np.unique(col.sample, return_counts=True)
        cur_vals, cur_cnt = np.unique(x, return_counts=True)
        keys = np.union1d(ref_vals, cur_vals)
        ref = np.zeros(keys.size)
        cur = np.zeros(keys.size)
        ref[np.searchsorted(keys, ref_vals)] = ref_cnt * scale
        cur[np.searchsorted(keys, cur_vals)] = cur_cnt
        return ref, cur

    def _categorical(self, col: CategoricalProfile, series: pd.Series,
                     ref_rows: list[np.ndarray], cur_rows: list[np.ndarray]) -> FeatureDrift:
        values = category_strings(series)
        vc = values.value_counts(sort=False)
        seen = [k for k in vc.index if k in col.index]
        unseen = sorted(str(k) for k in vc.index if k not in col.index)
        cur = np.zeros(len(col.categories))
        cur[[col.index[k] for k in seen]] = vc.loc[seen].to_numpy() if seen else []
        ref = col.counts.astype(np.float64)
        if self.binning == "quantile":
            ref = np.append(ref, 0.0)
            cur = np.append(cur, float(vc.loc[unseen].sum()) if unseen else 0.0)
        elif unseen:
            ref = np.append(ref, np.zeros(len(unseen)))
            cur = np.append(cur, vc.loc[unseen].to_numpy(dtype=np.float64))
        ref_rows.append(ref)
        cur_rows.append(cur)
        n = int(values.size)
        if n == 0:
            raise InputError(f"column '{col.name}' has no values in the current window")
        return FeatureDrift(
            name=col.name, kind="categorical", count_ref=col.count, count_cur=n,
            missing_ref=col.missing / max(col.count + col.missing, 1),
            missing_cur=1.0 - n / max(series.size, 1), bins=int(ref.size), unseen=unseen[:20],
        )

    def _fill_binned(self, feats: list[FeatureDrift], ref_rows: list[np.ndarray],
                     cur_rows: list[np.ndarray], need: set[str]) -> None:
        width = max(r.size for r in ref_rows)
        k = len(ref_rows)
        R = np.zeros((k, width))
        C = np.zeros((k, width))
        valid = np.zeros((k, width), dtype=bool)
        for i, (r, c) in enumerate(zip(ref_rows, cur_rows, strict=True)):
            R[i, : r.size] = r
            C[i, : c.size] = c
            valid[i, : r.size] = True
        eps = None if self.binning == "evidently" else self.epsilon
        b = binned_stats(R, C, valid, epsilon=eps, log_base=self.log_base)
        for i, f in enumerate(feats):
            if "psi" in need:
                f.psi = float(b.psi[i])
            if "kl" in need:
                f.kl = float(b.kl[i])
            if "js" in need:
                f.js = float(b.js[i])
            if "chi2" in need:
                f.chi2, f.chi2_p = float(b.chi2[i]), float(b.chi2_p[i])

    def _null_psi(self, feats: list[FeatureDrift]) -> str | None:
        """Warn when sampling noise alone brings PSI near its threshold: for identical
        distributions ``E[PSI] ~ (B - 1)(1/n + 1/m)`` (a chi-square approximation)."""
        if self.stat != "psi":
            return None
        worst = max(((f.bins - 1) * (1 / f.count_ref + 1 / f.count_cur), f.name)
                    for f in feats if f.bins > 1) if any(f.bins > 1 for f in feats) else None
        if worst is None or worst[0] < 0.5 * self.threshold:
            return None
        return (f"windows this small make PSI noisy: identical distributions average PSI "
                f"{worst[0]:.3f} ('{worst[1]}'), threshold {self.threshold}: use more rows, "
                "fewer bins or stat='ks'")

    def _decide(self, f: FeatureDrift) -> None:
        stat = self.stat
        threshold = self.threshold
        if f.kind == "categorical" and stat in ORDERED:
            stat, threshold = "psi", DEFAULT_THRESHOLDS["psi"]
        value = f.ks_p if stat == "ks" else f.chi2_p if stat == "chi2" else getattr(f, stat)
        f.stat, f.threshold, f.value = stat, threshold, value
        if value is None:
            f.drifted = False
        elif stat in P_VALUE_STATS:
            f.drifted = bool(value < threshold)
        else:
            f.drifted = bool(value >= threshold)
