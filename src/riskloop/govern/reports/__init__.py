"""Reports: one offline HTML file, Markdown, JSON, and an EU AI Act Annex IV draft.

Writing a report appends a ``report.write`` audit event with the file's SHA-256, so the
report that was handed to an auditor can later be matched to the store it came from.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from ...errors import InputError
from ...store import audit
from ...store.models import ModelVersion
from ..policy import Policy
from .annex_iv import TODO, render_annex_iv, todo_count
from .data import build
from .html import render_html
from .markdown import render_markdown

FORMATS = ("html", "md", "json")

__all__ = ["FORMATS", "TODO", "build", "render", "render_annex_iv", "render_html",
           "render_markdown", "write_annex_iv", "write_report"]


def render(data: dict[str, Any], fmt: str) -> str:
    if fmt == "html":
        return render_html(data)
    if fmt == "md":
        return render_markdown(data)
    if fmt == "json":
        return json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    raise InputError(f"unknown report format '{fmt}': choose one of {', '.join(FORMATS)}")


def _write(path: Path, text: str) -> str:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise InputError(f"cannot write '{path}' ({exc.strerror or exc}): choose a writable path") from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_report(
    session: Session, *, actor: str, mv: ModelVersion, policy: Policy, out: Path, fmt: str,
) -> dict[str, Any]:
    """Render and write one report file; audited with its digest."""
    if fmt not in FORMATS:
        raise InputError(f"unknown report format '{fmt}': choose one of {', '.join(FORMATS)}")
    if out.exists() and out.is_dir():
        raise InputError(f"'{out}' is a folder: give a file name such as {out / (mv.name + '.' + fmt)}")
    data = build(session, mv, policy)
    text = render(data, fmt)
    digest = _write(out, text)
    audit.append(session, actor=actor, action="report.write", subject=f"model:{mv.ref}",
                 payload={"path": str(out.resolve()), "format": fmt, "sha256": digest,
                          "decision": data["gate"]["decision"], "risk_score": data["risk"]["score"]})
    return {"model": mv.ref, "path": str(out), "format": fmt, "sha256": digest,
            "bytes": len(text.encode("utf-8")), "decision": data["gate"]["decision"],
            "risk_score": data["risk"]["score"]}


def write_annex_iv(
    session: Session, *, actor: str, mv: ModelVersion, policy: Policy, out_dir: Path,
) -> dict[str, Any]:
    """Write ``annex-iv.md`` (the draft) and ``evidence.json`` (the data behind it) to a folder."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"'{out_dir}' is a file: --annex-iv writes a folder, give a folder path")
    data = build(session, mv, policy)
    text = render_annex_iv(data)
    md_digest = _write(out_dir / "annex-iv.md", text)
    ev_digest = _write(out_dir / "evidence.json", json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    todo = todo_count(text)
    audit.append(session, actor=actor, action="report.write", subject=f"model:{mv.ref}",
                 payload={"path": str(out_dir.resolve()), "format": "annex-iv",
                          "sha256": md_digest, "evidence_sha256": ev_digest, "to_write": todo})
    return {"model": mv.ref, "path": str(out_dir), "files": ["annex-iv.md", "evidence.json"],
            "sha256": md_digest, "to_write": todo, "decision": data["gate"]["decision"]}
