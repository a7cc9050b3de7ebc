"""Black-box targets that run locally: scikit-learn estimators and ONNX models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .base import ACCESS_BLACK, ACCESS_LABEL, InputSpec, as_probabilities


class SklearnTarget:
    """A fitted scikit-learn classifier (or pipeline) queried through ``predict_proba``.

    Estimators without ``predict_proba`` are label-only: their answers are one-hot rows,
    which only decision-based attacks (HopSkipJump) can use.
    """

    def __init__(
        self,
        estimator: Any,
        *,
        input_spec: InputSpec | None = None,
        classes: tuple[str, ...] | list[str] | None = None,
        batch_size: int = 4096,
    ) -> None:
        if not hasattr(estimator, "predict"):
            raise InputError(f"{type(estimator).__name__} has no predict(): not a classifier")
        self.estimator = estimator
        fitted = getattr(estimator, "classes_", None)
        if classes is None:
            if fitted is None:
                raise InputError(f"{type(estimator).__name__} is not fitted (no classes_)")
            classes = [str(c) for c in fitted]
        self.classes = tuple(str(c) for c in classes)
        self._fitted_classes = list(fitted) if fitted is not None else list(range(len(self.classes)))
        if input_spec is None:
            n = getattr(estimator, "n_features_in_", None)
            input_spec = InputSpec(shape=(int(n),) if n else None, kind="tabular")
        self.input_spec = input_spec
        self.access = ACCESS_BLACK if hasattr(estimator, "predict_proba") else ACCESS_LABEL
        self.batch_size = int(batch_size)
        self.queries = 0

    def _flat(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(X).reshape(len(X), -1)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(0, len(X), self.batch_size):
            chunk = self._flat(X[i : i + self.batch_size])
            if self.access == ACCESS_BLACK:
                outs.append(np.asarray(self.estimator.predict_proba(chunk), dtype=np.float64))
            else:
                pred = self.estimator.predict(chunk)
                index = {c: j for j, c in enumerate(self._fitted_classes)}
                onehot = np.zeros((len(chunk), len(self.classes)))
                onehot[np.arange(len(chunk)), [index[p] for p in pred]] = 1.0
                outs.append(onehot)
        self.queries += len(X)
        return np.concatenate(outs) if outs else np.zeros((0, len(self.classes)))


class OnnxTarget:
    """An ONNX model run by onnxruntime (black-box: no gradients through the runtime).

    The first output that is a float tensor of shape (rows, classes) is read as
    probabilities when its rows sum to one, else as logits (softmax applied).
    """

    access = ACCESS_BLACK

    def __init__(
        self,
        path: str | Path,
        *,
        classes: tuple[str, ...] | list[str] | None = None,
        input_spec: InputSpec | None = None,
        batch_size: int = 4096,
    ) -> None:
        import onnxruntime as ort

        try:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 2
            self.session = ort.InferenceSession(str(path), sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise InputError(f"'{path}' is not a loadable ONNX model ({str(exc).splitlines()[0]})") from None
        inp = self.session.get_inputs()[0]
        self._input_name = inp.name
        self._output = self._pick_output()
        dims = [d if isinstance(d, int) else None for d in inp.shape[1:]]
        shape = tuple(dims) if all(d is not None for d in dims) else None
        self._onnx_shape = shape
        if classes is None:
            meta = self.session.get_modelmeta().custom_metadata_map
            if "classes" in meta:
                classes = [c for c in meta["classes"].split(",")]
            else:
                k = self._n_outputs()
                if k is None:
                    raise InputError(f"'{path}': cannot tell the number of classes; add a spec.json")
                classes = [str(i) for i in range(k)]
        self.classes = tuple(str(c) for c in classes)
        self.input_spec = input_spec or InputSpec(shape=shape, kind="tabular")  # type: ignore[arg-type]
        self.batch_size = int(batch_size)
        self.queries = 0

    def _pick_output(self) -> str:
        for out in self.session.get_outputs():
            if "float" in out.type and len(out.shape) == 2:
                return out.name
        raise InputError("the ONNX model has no (rows, classes) float output: export it with probabilities or logits")

    def _n_outputs(self) -> int | None:
        for out in self.session.get_outputs():
            if out.name == self._output and isinstance(out.shape[1], int):
                return int(out.shape[1])
        return None

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        outs = []
        for i in range(0, len(X), self.batch_size):
            chunk = np.ascontiguousarray(X[i : i + self.batch_size], dtype=np.float32)
            if self._onnx_shape is not None and chunk.shape[1:] != self._onnx_shape:
                chunk = chunk.reshape((len(chunk), *self._onnx_shape))
            (res,) = self.session.run([self._output], {self._input_name: chunk})
            outs.append(as_probabilities(res, where="the ONNX model"))
        self.queries += len(X)
        return np.concatenate(outs) if outs else np.zeros((0, len(self.classes)))
