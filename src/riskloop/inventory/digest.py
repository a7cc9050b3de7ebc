"""Content digests: SHA-256 per file and a root digest over the sorted manifest.

This is the file-manifest idea of OpenSSF model signing (OMS): a folder is covered file by
file, so a signature or a registry record notices any changed, added or removed file.

The root digest is ``sha256`` over the manifest lines ``"<relative/posix/path>\\0<sha256>\\n"``
sorted by path. For a single file the manifest holds one entry named after the file.
Signature files (``*.sig``) and hidden files/folders (``.git``, ``.riskloop``, ...) inside a
folder are not part of the content.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import MSG_PATH_MISSING, MSG_PATH_UNREADABLE, InputError

CHUNK = 1 << 20
IGNORED_SUFFIXES = (".sig",)


@dataclass(frozen=True)
class FileDigest:
    path: str
    sha256: str
    size: int

    def as_dict(self) -> dict[str, object]:
        return {"path": self.path, "sha256": self.sha256, "size": self.size}


@dataclass(frozen=True)
class Manifest:
    files: tuple[FileDigest, ...]
    root: str

    def as_list(self) -> list[dict[str, object]]:
        return [f.as_dict() for f in self.files]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def root_digest(entries: list[tuple[str, str]]) -> str:
    h = hashlib.sha256()
    for rel, digest in sorted(entries):
        h.update(f"{rel}\0{digest}\n".encode())
    return h.hexdigest()


def list_files(path: Path) -> list[Path]:
    """The files that make up an artifact, in a stable order."""
    if path.is_file():
        return [path]
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith(IGNORED_SUFFIXES):
                continue
            out.append(Path(dirpath) / name)
    return out


def manifest_of(path: str | os.PathLike[str]) -> Manifest:
    """Hash every file of ``path`` (a file or a folder)."""
    p = Path(path)
    if not p.exists():
        raise InputError(MSG_PATH_MISSING.format(path=p))
    try:
        files = list_files(p)
        if p.is_dir() and not files:
            raise InputError(f"folder '{p}' holds no files: nothing to register")
        entries = []
        for f in files:
            rel = f.name if p.is_file() else f.relative_to(p).as_posix()
            entries.append(FileDigest(rel, sha256_file(f), f.stat().st_size))
    except PermissionError as exc:
        raise InputError(MSG_PATH_UNREADABLE.format(path=p, reason=exc.strerror)) from None
    entries.sort(key=lambda e: e.path)
    return Manifest(tuple(entries), root_digest([(e.path, e.sha256) for e in entries]))


def diff_manifests(old: list[dict[str, object]], new: list[dict[str, object]]) -> list[str]:
    """Human-readable differences between two manifests (changed, added, removed files)."""
    a = {str(e["path"]): e["sha256"] for e in old}
    b = {str(e["path"]): e["sha256"] for e in new}
    out = [f"changed: {p}" for p in sorted(a.keys() & b.keys()) if a[p] != b[p]]
    out += [f"added: {p}" for p in sorted(b.keys() - a.keys())]
    out += [f"removed: {p}" for p in sorted(a.keys() - b.keys())]
    return out
