"""Backdoor detection from a model's penultimate-layer activations.

Poisoned training samples that carry a trigger are classified as the attacker's target class
for a different reason than the clean samples of that class, and this shows in the
representation the model learned for them:

- :class:`SpectralSignatures` (Tran, Li and Madry 2018, "Spectral Signatures in Backdoor
  Attacks", NeurIPS): per class, the squared projection of the centred activations on their
  top singular vector is large for poisoned samples.
- :class:`ActivationClustering` (Chen et al. 2018, "Detecting Backdoor Attacks on Deep Neural
  Networks by Activation Clustering", arXiv:1811.03728): per class, reduce the activations to
  a few dimensions and cluster them; poison forms clusters of its own.

Both take the training data with the labels it was trained on. Each proposes suspicious groups
of rows per class; a group is confirmed by reclassification (Chen et al.'s "exclusionary
reclassification"): a fresh model of the target's architecture, trained on trusted held-out
data (or, without it, on the training data minus every suspicious group), classifies the
group. Poisoned rows carry the label the attacker chose, so that model mostly disagrees with
it, while an unusual but genuine sub-population of the class is still recognised. Chen et al.
call a cluster poison when fewer of its rows are predicted as its label (``l``) than as the
most frequent other class (``p``); poison drawn from many source classes spreads ``p`` thin,
so here a group is poison when at most ``max_agreement`` (default half) of its rows are
predicted as its label. Confirmed groups are flagged by row id (0-based position in the
training data), so sanitisation can remove them.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ...errors import InputError
from ...findings import AssessmentResult, Finding, Severity
from ...targets.base import Target, check_data
from ..privacy._fit import learner_for

log = logging.getLogger(__name__)

MSG_NEEDS_ACTIVATIONS = (
    "backdoor detection reads the model's penultimate-layer activations, but the target is "
    "{access} without a torch module: assess a torch model registered with its weights"
)


def penultimate_activations(target: Target, X: np.ndarray, *, batch_size: int = 512) -> np.ndarray:
    """Inputs of the model's last ``nn.Linear`` layer (the penultimate representation)."""
    import torch
    from torch import nn

    module = getattr(target, "module", None)
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)] if isinstance(module, nn.Module) else []
    if not linears:
        raise InputError(MSG_NEEDS_ACTIVATIONS.format(access=getattr(target, "access", "unknown")))
    captured: list[np.ndarray] = []

    def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        captured.append(inputs[0].detach().reshape(len(inputs[0]), -1).float().cpu().numpy())

    handle = linears[-1].register_forward_pre_hook(hook)
    try:
        with torch.inference_mode():
            for i in range(0, len(X), batch_size):
                module(torch.as_tensor(np.ascontiguousarray(X[i : i + batch_size], dtype=np.float32)))
    finally:
        handle.remove()
    target.queries += len(X)
    return np.concatenate(captured) if captured else np.zeros((0, linears[-1].in_features), np.float32)


def spectral_scores(activations: np.ndarray) -> np.ndarray:
    """Tran et al.'s outlier score: squared projection of the centred rows on the top singular vector."""
    R = np.asarray(activations, dtype=np.float64)
    M = R - R.mean(axis=0)
    _, _, vt = np.linalg.svd(M, full_matrices=False)
    return (M @ vt[0]) ** 2


def reclassify(
    target: Target,
    X: np.ndarray,
    y: np.ndarray,
    suspicious: np.ndarray,
    *,
    X_trusted: np.ndarray | None = None,
    y_trusted: np.ndarray | None = None,
    epochs: int = 30,
    random_state: int = 0,
) -> tuple[np.ndarray, str]:
    """Predictions for ``X`` by a fresh model that never saw the suspicious rows.

    Trained on trusted data when given, else on the rows of ``X`` not marked ``suspicious``
    (Chen et al.'s exclusionary reclassification).
    """
    learner = learner_for(target, epochs=epochs, random_state=random_state)
    if X_trusted is not None and y_trusted is not None and len(X_trusted):
        learner.fit(X_trusted, y_trusted)
        how = "trusted"
    else:
        learner.fit(X[~suspicious], y[~suspicious])
        how = "exclusion"
    return np.asarray(learner.predict_proba(X)).argmax(axis=1), how


def confirm(rows: np.ndarray, label: int, predicted: np.ndarray, *, max_agreement: float = 0.5) -> tuple[bool, int, int]:
    """Whether a group is poison: at most ``max_agreement`` of it predicted as ``label``.

    Returns the decision, ``l`` (rows predicted as the label) and ``p`` (rows predicted as the
    most frequent other class, Chen et al.'s statistic, for the report).
    """
    pred = predicted[rows]
    l_count = int(np.sum(pred == label))
    others = pred[pred != label]
    p_count = int(np.bincount(others).max()) if len(others) else 0
    return l_count <= max_agreement * len(rows), l_count, p_count


class _GroupDetector:
    """Shared run(): activations, candidate groups per class, reclassification, finding."""

    name = ""
    metric_key = ""
    threats = ("backdoor", "data-poisoning")
    access = "white-box"
    requires = ("torch",)
    random_state = 0
    reclassify_epochs = 30
    max_agreement = 0.5

    def groups(self, activations: np.ndarray, y: np.ndarray) -> list[tuple[int, np.ndarray]]:
        raise NotImplementedError

    def exclusion(self, cands: list[tuple[int, np.ndarray]], y: np.ndarray) -> np.ndarray:
        """Rows the exclusionary reclassifier must not train on: every candidate group that
        is a minority of its class."""
        suspicious = np.zeros(len(y), dtype=bool)
        for c, rows in cands:
            if len(rows) < 0.5 * np.sum(y == c):
                suspicious[rows] = True
        return suspicious

    def detect(
        self,
        target: Target,
        X: np.ndarray,
        y: np.ndarray,
        *,
        activations: np.ndarray | None = None,
        X_trusted: np.ndarray | None = None,
        y_trusted: np.ndarray | None = None,
        predicted: np.ndarray | None = None,
    ) -> np.ndarray:
        """Boolean mask of confirmed poisoned rows (inputs and labels already checked).

        ``predicted`` are reclassification predictions for ``X`` made beforehand (by a model
        trained on trusted data); without them :func:`reclassify` makes them.
        """
        acts = penultimate_activations(target, X) if activations is None else activations
        cands = self.groups(acts, y)
        flagged = np.zeros(len(y), dtype=bool)
        self.reclassified_by_ = "given" if predicted is not None else None
        if cands and predicted is None:
            # Without trusted data the reclassifier trains on the training data minus the
            # rows that look most like poison (see :meth:`exclusion`).
            suspicious = self.exclusion(cands, y)
            predicted, self.reclassified_by_ = reclassify(
                target, X, y, suspicious, X_trusted=X_trusted, y_trusted=y_trusted,
                epochs=self.reclassify_epochs, random_state=self.random_state)
        for c, rows in cands:
            poison, l_count, p_count = confirm(rows, c, predicted, max_agreement=self.max_agreement)
            info = self.by_class_[str(c)]
            info["groups"] = info.get("groups", 0) + 1
            if poison:
                flagged[rows] = True
                info["suspicious"] = True
                info.setdefault("confirmed", []).append(
                    {"rows": len(rows), "predicted_as_label": l_count, "predicted_as_top_other": p_count})
        for c in np.unique(y):
            info = self.by_class_.get(str(int(c)))
            if info is not None:
                info["flagged"] = int(flagged[y == c].sum())
        self.by_class_ = {target.classes[int(k)]: v for k, v in self.by_class_.items()}
        return flagged

    def run(
        self, target: Target, X: Any, y: Any, *, X_trusted: Any | None = None,
        y_trusted: Any | None = None,
    ) -> AssessmentResult:
        Xc, yc = check_data(target, X, y, where="training data")
        Xt = yt = None
        if X_trusted is not None:
            Xt, yt = check_data(target, X_trusted, y_trusted, where="trusted data")
        mask = self.detect(target, Xc, yc, X_trusted=Xt, y_trusted=yt)
        self.flagged_ = np.flatnonzero(mask)
        return self.result(len(yc))

    def result(self, n: int) -> AssessmentResult:
        """The AssessmentResult of the last :meth:`detect` (``flagged_`` set) over ``n`` rows."""
        frac = len(self.flagged_) / n if n else 0.0
        return AssessmentResult(
            suite="integrity", metrics={self.metric_key: frac},
            findings=[_flag_finding(self.name, self.flagged_, n, self.by_class_)],
            params={self.name: {**self.get_params(), "reclassified_by": self.reclassified_by_}},
        )

    def get_params(self) -> dict[str, Any]:
        raise NotImplementedError


def _flag_finding(name: str, flagged: np.ndarray, n: int, by_class: dict[str, Any]) -> Finding:
    frac = len(flagged) / n if n else 0.0
    suspicious = [c for c, v in by_class.items() if v.get("suspicious")]
    sev = Severity.HIGH if frac >= 0.05 else Severity.MEDIUM if suspicious else Severity.INFO
    title = (f"{name}: {len(flagged)} of {n} training rows look poisoned (class {', '.join(suspicious)})"
             if suspicious else f"{name}: no class shows a separate poisoned sub-population")
    return Finding(
        threat_id="backdoor", severity=sev, title=title,
        detail="Row ids (0-based positions in the training data) are in the evidence; remove or "
               "review them and retrain.",
        metric="backdoor_flagged_fraction", value=frac,
        evidence={"detector": name, "rows": [int(i) for i in flagged], "by_class": by_class},
    )


class SpectralSignatures(_GroupDetector):
    """Spectral-signature backdoor detection (Tran et al. 2018).

    Per class, rows are scored with :func:`spectral_scores` and the ``eps_multiplier *
    expected_poison`` highest-scoring fraction of the class is the candidate group (the
    paper's removal rule, and ART's ``SpectralSignatureDefense``). The paper removes these
    rows from every class; here a class's group is flagged only when reclassification
    confirms it (see the module docstring), so clean classes keep their rows.
    The method assumes poison is a small fraction of its class: with a third of the class
    poisoned (5% of a 10-class dataset aimed at one class) its ranking weakens markedly
    (measured in docs/measure.md).

    Examples::

        det = SpectralSignatures(expected_poison=0.05)
        result = det.run(target, X_train, y_train, X_trusted=X_val, y_trusted=y_val)
        det.flagged_                      # row ids
    """

    name = "spectral-signatures"
    metric_key = "spectral_flagged_fraction"

    def __init__(
        self,
        *,
        expected_poison: float = 0.05,
        eps_multiplier: float = 1.5,
        reclassify_epochs: int = 30,
        random_state: int = 0,
    ) -> None:
        if not 0.0 < expected_poison < 1.0:
            raise InputError(f"bad expected_poison {expected_poison}: a fraction in (0, 1)")
        self.expected_poison = float(expected_poison)
        self.eps_multiplier = float(eps_multiplier)
        self.reclassify_epochs = int(reclassify_epochs)
        self.random_state = int(random_state)

    def get_params(self) -> dict[str, Any]:
        return {"expected_poison": self.expected_poison, "eps_multiplier": self.eps_multiplier,
                "random_state": self.random_state}

    def groups(self, activations: np.ndarray, y: np.ndarray) -> list[tuple[int, np.ndarray]]:
        self.scores_ = np.zeros(len(y))
        self.by_class_: dict[str, Any] = {}
        out: list[tuple[int, np.ndarray]] = []
        q = max(1.0 - self.eps_multiplier * self.expected_poison, 0.0)
        for c in np.unique(y):
            rows = np.flatnonzero(y == c)
            self.by_class_[str(int(c))] = {"rows": len(rows), "suspicious": False}
            if len(rows) < 3:
                continue
            s = spectral_scores(activations[rows])
            self.scores_[rows] = s
            out.append((int(c), rows[s >= np.quantile(s, q)]))
        return out


class ActivationClustering(_GroupDetector):
    """Activation-clustering backdoor detection (Chen et al. 2018).

    Per class: PCA (or FastICA, as in the paper) to ``n_dims`` dimensions and k-means. Chen et
    al. split each class in two; when the attacker's class is a third poison (5% of a
    10-class dataset), two clusters often cut across the poison, so every k from 2 to
    ``max_clusters`` is tried and every cluster of at least ``min_rows`` rows is a candidate
    group. Reclassification (module docstring) decides; clean clusters of a clean class are
    recognised as their label and stay.

    Examples::

        det = ActivationClustering(random_state=0)
        result = det.run(target, X_train, y_train, X_trusted=X_val, y_trusted=y_val)
        det.flagged_                      # row ids
    """

    name = "activation-clustering"
    metric_key = "activation_clustering_flagged_fraction"

    def __init__(
        self,
        *,
        n_dims: int = 10,
        reduce: str = "PCA",
        max_clusters: int = 5,
        min_rows: int = 5,
        max_agreement: float = 0.5,
        exclusion_share: float = 0.35,
        reclassify_epochs: int = 30,
        random_state: int = 0,
    ) -> None:
        if reduce not in ("PCA", "FastICA"):
            raise InputError(f"unknown reduction '{reduce}': choose PCA or FastICA")
        if n_dims < 1:
            raise InputError(f"bad n_dims {n_dims}: at least one dimension")
        if max_clusters < 2:
            raise InputError(f"bad max_clusters {max_clusters}: at least 2")
        if not 0.0 <= max_agreement < 1.0:
            raise InputError(f"bad max_agreement {max_agreement}: a fraction in [0, 1)")
        self.n_dims = int(n_dims)
        self.reduce = reduce
        self.max_clusters = int(max_clusters)
        self.min_rows = int(min_rows)
        self.max_agreement = float(max_agreement)
        if not 0.0 < exclusion_share < 0.5:
            raise InputError(f"bad exclusion_share {exclusion_share}: a fraction in (0, 0.5)")
        self.exclusion_share = float(exclusion_share)
        self.reclassify_epochs = int(reclassify_epochs)
        self.random_state = int(random_state)

    def get_params(self) -> dict[str, Any]:
        return {"n_dims": self.n_dims, "reduce": self.reduce, "max_clusters": self.max_clusters,
                "min_rows": self.min_rows, "max_agreement": self.max_agreement,
                "exclusion_share": self.exclusion_share, "random_state": self.random_state}

    def reduce_activations(self, acts: np.ndarray) -> np.ndarray:
        from sklearn.decomposition import PCA, FastICA

        dims = min(self.n_dims, acts.shape[1], len(acts) - 1)
        if self.reduce == "PCA":
            proj = PCA(n_components=dims, random_state=self.random_state)
        else:
            proj = FastICA(n_components=dims, max_iter=1000, tol=0.005, random_state=self.random_state)
        return proj.fit_transform(acts)

    def exclusion(self, cands: list[tuple[int, np.ndarray]], y: np.ndarray) -> np.ndarray:
        """Per class, the smaller cluster of the two-way split when it holds at most
        ``exclusion_share`` of the class (Chen et al.'s relative-size analysis; ART's
        ``size_threshold`` 0.35). The clusters of k > 2 are not used here: every row lies in
        some minority cluster of a five-way split, so excluding them all would leave the
        reclassifier nothing to learn from and every clean cluster would look like poison."""
        suspicious = np.zeros(len(y), dtype=bool)
        for (c, k), labels in self.clusters_.items():
            if k != 2:
                continue
            rows = np.flatnonzero(y == c)
            small = int(np.argmin(np.bincount(labels, minlength=2)))
            if np.mean(labels == small) <= self.exclusion_share:
                suspicious[rows[labels == small]] = True
        return suspicious

    def groups(self, activations: np.ndarray, y: np.ndarray) -> list[tuple[int, np.ndarray]]:
        from sklearn.cluster import KMeans

        self.by_class_: dict[str, Any] = {}
        self.clusters_: dict[tuple[int, int], np.ndarray] = {}
        out: list[tuple[int, np.ndarray]] = []
        for c in np.unique(y):
            rows = np.flatnonzero(y == c)
            self.by_class_[str(int(c))] = {"rows": len(rows), "suspicious": False}
            if len(rows) < 2 * self.min_rows:
                continue
            red = self.reduce_activations(np.asarray(activations[rows], dtype=np.float64))
            for k in range(2, min(self.max_clusters, len(rows) // self.min_rows) + 1):
                labels = KMeans(n_clusters=k, n_init=10, random_state=self.random_state).fit_predict(red)
                self.clusters_[(int(c), k)] = labels
                for j in range(k):
                    members = rows[labels == j]
                    if len(members) >= self.min_rows:
                        out.append((int(c), members))
        return out
