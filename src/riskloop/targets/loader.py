"""The one safe way to turn a registered model version into a target, and a dataset into arrays.

Formats that cannot run code when read load directly: ``torch-safetensors`` (torchspec
folder), ``torch-export`` (``.pt2``), ``onnx`` (onnxruntime) and ``skops`` (with skops'
trusted-types check). Pickle-based formats (``torch-pickle``, ``sklearn-pickle``) can execute
arbitrary code while loading; :func:`check_loadable` refuses them unless a scan marked the
version clean, the version is marked trusted, or the caller passes ``trust=True``.

Before anything is read, the files are hashed and compared with the digest recorded at
registration, so the model (and data) assessed is the one in the inventory.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Settings
from ..errors import MSG_PATH_MISSING, InputError, IntegrityError, PolicyViolation
from ..store.models import DatasetVersion, ModelVersion
from .base import InputSpec, Target, guess_kind

log = logging.getLogger(__name__)

SAFE_FORMATS = ("torch-safetensors", "torch-export", "onnx", "skops")
PICKLE_FORMATS = ("torch-pickle", "sklearn-pickle")
EXPORT_SPEC = "riskloop.spec.json"


def check_loadable(model_version: ModelVersion, trust: bool = False) -> None:
    """Raise PolicyViolation unless ``model_version`` may be loaded into this process.

    This is the single place that decides. Before the format rules below, two policies
    apply to every format: a version whose scan found critical or unknown content loads only
    after an explicit, audited ``riskloop trust`` decision, and a version in the ``high`` or
    ``prohibited`` tier needs a valid signature (the default signature policy; see
    ``docs/supply-chain.md``).
    """
    fmt, ref = model_version.format, model_version.ref
    _check_scan_and_signature(model_version)
    if fmt in SAFE_FORMATS:
        return
    if fmt in PICKLE_FORMATS:
        if trust or model_version.trusted or model_version.scan_status == "clean":
            why = "--trust" if trust else ("trusted" if model_version.trusted else "scan clean")
            log.warning("loading pickle-based model %s (%s): allowed by %s", ref, fmt, why)
            return
        raise PolicyViolation(
            f"model '{ref}' is stored as {fmt}, which can run code when loaded, and has not "
            f"passed a scan (scan status '{model_version.scan_status}'): scan it first, or pass "
            "--trust if you trust where it came from"
        )
    raise PolicyViolation(
        f"model '{ref}' has format '{fmt}', which riskloop cannot load as a target: store it "
        f"as one of {', '.join(SAFE_FORMATS)}"
    )


SIGNED_TIERS = ("high", "prohibited")


def _check_scan_and_signature(mv: ModelVersion) -> None:
    ref, status = mv.ref, mv.scan_status
    if status in ("malicious", "needs-trust") and not mv.trusted:
        what = "critical findings" if status == "malicious" else "content that needs trust"
        raise PolicyViolation(
            f"model '{ref}' has {what} in its supply-chain scan (scan status '{status}'): review "
            f"'riskloop scan {mv.path}' and, only if you accept it, record the decision with "
            f"'riskloop trust {ref} --reason ...'"
        )
    if mv.tier in SIGNED_TIERS and mv.signature_status != "signed":
        fix = (f"sign it with 'riskloop sign {ref} --key KEY'" if mv.signature_status == "unsigned"
               else f"check it with 'riskloop verify {ref}', then register and sign the files you trust ('riskloop sign')")
        raise PolicyViolation(
            f"model '{ref}' is in the {mv.tier} risk tier, which requires a valid signature, and its "
            f"signature status is '{mv.signature_status}': {fix}"
        )


def _verify_digest(kind: str, ref: str, path: Path, digest: str) -> None:
    from ..inventory.digest import manifest_of

    if not path.exists():
        raise InputError(MSG_PATH_MISSING.format(path=path))
    now = manifest_of(path).root
    if now != digest:
        raise IntegrityError(
            f"{kind} '{ref}' at '{path}' no longer matches its registered digest "
            f"({digest[:12]} registered, {now[:12]} now): register the changed files as a new version"
        )


def load_target(
    session: Any, settings: Settings | None, model_version: ModelVersion, *, trust: bool = False
) -> Target:
    """Load a registered model version as a :class:`~riskloop.targets.base.Target`."""
    check_loadable(model_version, trust)
    path = Path(model_version.path)
    _verify_digest("model", model_version.ref, path, model_version.digest)
    loader = _LOADERS.get(model_version.format)
    if loader is None:  # pragma: no cover - check_loadable covers every format
        raise PolicyViolation(f"no loader for format '{model_version.format}'")
    return loader(path)


# -- loaders per format ---------------------------------------------------------------------
def _load_safetensors(path: Path) -> Target:
    from .torch_target import TorchTarget
    from .torchspec import load_torch_model

    module, spec = load_torch_model(path)
    return TorchTarget.from_spec(module, spec)


def _read_spec(folder: Path) -> dict[str, Any]:
    spec_path = folder / "spec.json"
    if not spec_path.exists():
        return {}
    try:
        return json.loads(spec_path.read_text())
    except ValueError as exc:
        raise InputError(f"'{spec_path}' is not valid JSON ({exc})") from None


def _spec_from(spec: dict[str, Any], shape: tuple[int, ...] | None) -> InputSpec:
    shape = tuple(spec["input_shape"]) if spec.get("input_shape") else shape
    lo, hi = spec.get("input_range") or (None, None)
    lo = -np.inf if lo is None else lo
    hi = np.inf if hi is None else hi
    return InputSpec(shape=shape, lower=lo, upper=hi, frozen=spec.get("frozen"),
                     kind=spec.get("kind") or guess_kind(shape, lo, hi))


def _load_export(path: Path) -> Target:
    import torch

    from .torch_target import TorchTarget

    extra = {EXPORT_SPEC: ""}
    try:
        program = torch.export.load(str(path), extra_files=extra)
    except Exception as exc:  # torch raises many types for a broken archive
        raise InputError(f"'{path}' is not a loadable torch.export archive ({str(exc).splitlines()[0]})") from None
    spec: dict[str, Any] = json.loads(extra[EXPORT_SPEC]) if extra[EXPORT_SPEC] else {}
    user_inputs = program.graph_signature.user_inputs
    shape: tuple[int, ...] | None = None
    batch: int | None = None
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs and "val" in node.meta:
            dims = list(node.meta["val"].shape)
            batch = dims[0] if isinstance(dims[0], int) else None
            if all(isinstance(d, int) for d in dims[1:]):
                shape = tuple(int(d) for d in dims[1:])
            break
    module = program.module()
    if batch is not None:
        module = _fixed_batch_module(module, batch)
    input_spec = _spec_from(spec, shape)
    classes = spec.get("classes")
    if not classes:
        if shape is None:
            raise InputError(f"'{path}': no classes recorded; save it with a {EXPORT_SPEC} extra file")
        with torch.no_grad():
            k = module(torch.zeros((1, *shape))).shape[1]
        classes = [str(i) for i in range(k)]
    return TorchTarget(module, input_spec=input_spec, classes=classes)


def _fixed_batch_module(module: Any, batch: int) -> Any:
    import torch
    from torch import nn

    class FixedBatch(nn.Module):
        """Pads and chunks calls to the static batch size an export was traced with."""

        def __init__(self) -> None:
            super().__init__()
            self.inner = module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            outs = []
            for i in range(0, len(x), batch):
                part = x[i : i + batch]
                n = len(part)
                if n < batch:
                    pad = part[-1:].expand(batch - n, *part.shape[1:])
                    part = torch.cat([part, pad])
                outs.append(self.inner(part)[:n])
            return torch.cat(outs)

    return FixedBatch()



def _load_onnx(path: Path) -> Target:
    from .sklearn_target import OnnxTarget

    folder = path if path.is_dir() else path.parent
    file = path
    if path.is_dir():
        found = sorted(path.glob("*.onnx"))
        if len(found) != 1:
            raise InputError(f"'{path}' should hold exactly one .onnx file, found {len(found)}")
        file = found[0]
    spec = _read_spec(folder) if path.is_dir() else {}
    target = OnnxTarget(file, classes=spec.get("classes"))
    if spec:
        target.input_spec = _spec_from(spec, target.input_spec.shape)
    return target


def _load_skops(path: Path) -> Target:
    import skops.io as sio

    from .sklearn_target import SklearnTarget

    try:
        untrusted = sio.get_untrusted_types(file=str(path))
    except Exception as exc:  # skops raises several types for broken files
        raise InputError(f"'{path}' is not a readable skops file ({str(exc).splitlines()[0]})") from None
    if untrusted:
        raise PolicyViolation(
            f"'{path}' contains types skops does not trust by default "
            f"({', '.join(untrusted[:5])}): review them; riskloop loads only trusted skops types"
        )
    estimator = sio.load(str(path), trusted=[])
    return SklearnTarget(estimator)


def _load_torch_pickle(path: Path) -> Target:
    import torch
    from torch import nn

    from .torch_target import TorchTarget

    obj = torch.load(str(path), weights_only=False, map_location="cpu")  # allowed by check_loadable
    if not isinstance(obj, nn.Module):
        raise InputError(
            f"'{path}' holds a {type(obj).__name__}, not a whole module: store the model as a "
            "torchspec folder (spec.json + model.safetensors)"
        )
    linears = [m for m in obj.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InputError(f"'{path}': cannot tell the number of classes (no final Linear layer)")
    k = linears[-1].out_features
    return TorchTarget(obj, input_spec=InputSpec(shape=None), classes=[str(i) for i in range(k)])


def _load_sklearn_pickle(path: Path) -> Target:
    import joblib

    from .sklearn_target import SklearnTarget

    return SklearnTarget(joblib.load(str(path)))  # allowed by check_loadable


_LOADERS = {
    "torch-safetensors": _load_safetensors,
    "torch-export": _load_export,
    "onnx": _load_onnx,
    "skops": _load_skops,
    "torch-pickle": _load_torch_pickle,
    "sklearn-pickle": _load_sklearn_pickle,
}


# -- datasets -------------------------------------------------------------------------------
def load_arrays(dataset_version: DatasetVersion, *, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and labels of a registered NPZ, CSV or Parquet dataset (or a folder of them).

    NPZ: the label array is the dataset's target (default ``y``), the inputs are ``X`` (or
    the single other array). CSV/Parquet: the target column is the label, every other
    column an input feature (all must be numeric).
    """
    path = Path(dataset_version.path)
    ref = dataset_version.ref
    if verify:
        _verify_digest("dataset", ref, path, dataset_version.digest)
    files = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")) if path.is_dir() else [path]
    parts = [_read_file(f, dataset_version) for f in files]
    if not parts:
        raise InputError(f"dataset '{ref}' holds no files")
    shapes = {p[0].shape[1:] for p in parts}
    if len(shapes) > 1:
        raise InputError(f"dataset '{ref}': files disagree on the input shape ({shapes})")
    X = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    if len(X) != len(y):
        raise InputError(f"dataset '{ref}': {len(X)} inputs but {len(y)} labels")
    return X, y


def _read_file(path: Path, ds: DatasetVersion) -> tuple[np.ndarray, np.ndarray]:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _read_npz(path, ds)
    if suffix in (".csv", ".parquet", ".pq"):
        import pandas as pd

        frame = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
        target = ds.target
        if not target:
            raise InputError(
                f"dataset '{ds.ref}' has no target column: register it again with --target COLUMN"
            )
        if target not in frame.columns:
            raise InputError(f"dataset '{ds.ref}': target column '{target}' is not in '{path}'")
        features = frame.drop(columns=[target])
        numeric = pd.api.types.is_numeric_dtype
        bad = [str(c) for c, t in features.dtypes.items() if not numeric(t)]
        if bad:
            raise InputError(
                f"dataset '{ds.ref}': column(s) {', '.join(bad)} are not numeric: encode them "
                "before assessing a model on this data"
            )
        return features.to_numpy(dtype=np.float32), frame[target].to_numpy()
    raise InputError(f"dataset '{ds.ref}': '{path.name}' is not NPZ, CSV or Parquet")


def _read_npz(path: Path, ds: DatasetVersion) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except ValueError as exc:
        raise InputError(f"dataset '{ds.ref}': '{path}' cannot be read without pickle ({exc})") from None
    label = ds.target or "y"
    if label not in arrays:
        raise InputError(
            f"dataset '{ds.ref}': no label array '{label}' in '{path.name}' (arrays: "
            f"{', '.join(arrays)}): register it with --target ARRAY"
        )
    rest = [k for k in arrays if k != label]
    key = "X" if "X" in rest else ("x" if "x" in rest else (rest[0] if len(rest) == 1 else None))
    if key is None:
        raise InputError(
            f"dataset '{ds.ref}': cannot tell the input array in '{path.name}' (arrays: "
            f"{', '.join(arrays)}): name it X"
        )
    return arrays[key], arrays[label]
