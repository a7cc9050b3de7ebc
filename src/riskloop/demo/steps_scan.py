"""Demo MEASURE step: the model-file supply-chain scan (paper 3.3.1, Table 2).

The demo's own model (spec.json + safetensors) was scanned when it was registered and is
clean. Then a "downloaded pre-trained model" arrives: a pickle that would run a shell command
when loaded. It is written byte by byte (never loaded), under a name that hides it is a
pickle; the scanner finds it by content, names the dangerous global, and the loader gate
refuses it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..assess.runs import runs_for
from ..assess.supply_chain import scan_paths
from ..errors import PolicyViolation
from ..inventory.refs import resolve_model
from ..store.db import transaction
from ..store.models import ModelVersion
from ..targets.loader import check_loadable

if TYPE_CHECKING:  # scenario imports this module
    from .scenario import DemoContext


def crafted_pickle(command: str) -> bytes:
    """``os.system(command)`` as a protocol-4 pickle, assembled opcode by opcode."""

    def text(t: str) -> bytes:
        raw = t.encode()
        return b"\x8c" + bytes([len(raw)]) + raw + b"\x94"  # SHORT_BINUNICODE, MEMOIZE

    return (b"\x80\x04" + text("posix") + text("system") + b"\x93\x94"  # STACK_GLOBAL
            + text(command) + b"\x85\x94R\x94.")  # TUPLE1, REDUCE, STOP


def step_scan(ctx: DemoContext) -> Iterator[tuple[str, dict[str, Any]]]:
    settings = ctx.settings
    with transaction(settings) as s:
        mv = resolve_model(s, ctx.refs["model"])
        runs = runs_for(s, mv, suite="supply-chain")
        model = {"model": mv.ref, "model_scan_status": mv.scan_status,
                 "registration_scan_run": runs[-1].id if runs else None}
    own = scan_paths([ctx.data["model_dir"]])
    downloads = settings.workspace / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    crafted = downloads / "pretrained-cnn.bin"
    crafted.write_bytes(crafted_pickle("echo this command never runs"))
    bad = scan_paths([crafted])
    critical = [i for _f, i in bad.issues if i.verdict == "malicious"]
    # what the loader decides for such a file once registered (a version not stored here)
    candidate = ModelVersion(name="pretrained-cnn", version=1, path=str(crafted),
                             format="torch-pickle", scan_status=bad.verdict, trusted=False,
                             tier="minimal", signature_status="unsigned")
    try:
        check_loadable(candidate)
        gate = "loaded"
    except PolicyViolation:
        gate = "refused"
    yield "scan", {
        **model, "model_verdict": own.verdict, "model_files": len(own.files),
        "crafted_file": str(crafted), "crafted_format": bad.files[0].format,
        "crafted_verdict": bad.verdict,
        "crafted_global": critical[0].global_name if critical else None,
        "loader": gate,
        "findings": [{"rule": i.rule_id, "title": i.title, "detail": i.detail} for i in critical],
    }
