"""Signing model versions with local EC keys in the OpenSSF model-signing (OMS) format.

Signatures are written by the ``model-signing`` library (a Sigstore bundle holding a DSSE
envelope over an in-toto statement whose resources are the per-file digests), so
``model_signing verify key`` checks them as well. They are stored in the workspace under
``.riskloop/signatures/<name>/<version>.sig``, outside the model folder, so signing never
changes the content it covers. Everything works offline.
"""

from __future__ import annotations

import hashlib
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import select
from sqlalchemy.orm import Session

from ..config import Settings
from ..errors import InputError, IntegrityError, NotFoundError
from ..store import audit
from ..store.models import ModelVersion, Signature
from .digest import diff_manifests, manifest_of

log = logging.getLogger(__name__)


def keygen(private_path: Path, *, force: bool = False) -> tuple[Path, Path]:
    """Write an EC P-256 private key (mode 600) and its public key next to it."""
    public_path = private_path.with_name(private_path.stem + ".pub.pem")
    for p in (private_path, public_path):
        if p.exists() and not force:
            raise InputError(f"'{p}' already exists: choose another path or pass --force")
    private_path.parent.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
    public_path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path


def _load_private(path: Path) -> ec.EllipticCurvePrivateKey:
    if not path.exists():
        raise InputError(f"key '{path}' does not exist: create one with 'riskloop keygen'")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise InputError(f"'{path}' is not an unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InputError(f"'{path}' is not an elliptic-curve key: create one with 'riskloop keygen'")
    return key


def _public_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def fingerprint(public_pem: str) -> str:
    key = serialization.load_pem_public_key(public_pem.encode())
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def signature_path(settings: Settings, mv: ModelVersion) -> Path:
    return settings.state_dir / "signatures" / mv.name / f"{mv.version}.sig"


def sign_model(
    session: Session, settings: Settings, mv: ModelVersion, *, key_path: Path
) -> Signature:
    """Re-hash the model, check it still matches the registry, and sign it."""
    import model_signing

    key = _load_private(key_path)
    current = manifest_of(mv.path)
    if current.root != mv.digest:
        changes = diff_manifests(mv.manifest, current.as_list())
        raise IntegrityError(
            f"model {mv.ref} changed since it was registered ({'; '.join(changes[:3])}): "
            "register the new content as a new version before signing"
        )
    sig_path = signature_path(settings, mv)
    sig_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = sig_path.with_suffix(".sig.tmp")
    model_signing.signing.Config().use_elliptic_key_signer(private_key=key_path).sign(
        Path(mv.path), tmp
    )
    pub = _public_pem(key)
    sig = Signature(
        model_id=mv.id, signature_path=str(sig_path), public_key_pem=pub,
        key_fingerprint=fingerprint(pub), digest=mv.digest, signed_by=settings.actor,
        status="valid",
    )
    session.add(sig)
    mv.signature_status = "signed"
    session.flush()
    audit.append(
        session, actor=settings.actor, action="model.sign", subject=f"model:{mv.ref}",
        payload={"digest": mv.digest, "key_fingerprint": sig.key_fingerprint,
                 "signature": str(sig_path)},
    )
    tmp.replace(sig_path)
    return sig


def latest_signature(session: Session, mv: ModelVersion) -> Signature | None:
    return session.execute(
        select(Signature).where(Signature.model_id == mv.id).order_by(Signature.id.desc()).limit(1)
    ).scalar_one_or_none()


def verify_model(
    session: Session, settings: Settings, mv: ModelVersion, *, public_key: Path | None = None
) -> tuple[bool, list[str]]:
    """Check the stored signature with the library and re-hash against the registry.

    Returns (ok, problems). Records the outcome on the model and in the audit trail.
    """
    import model_signing

    sig = latest_signature(session, mv)
    if sig is None:
        raise NotFoundError(f"model {mv.ref} has no signature: sign it with 'riskloop sign'")
    problems: list[str] = []
    current = manifest_of(mv.path) if Path(mv.path).exists() else None
    if current is None:
        problems.append(f"model path '{mv.path}' is gone")
    elif current.root != mv.digest:
        problems.extend(diff_manifests(mv.manifest, current.as_list()))
    if public_key is not None:
        if not public_key.exists():
            raise InputError(f"public key '{public_key}' does not exist")
        pub_pem = public_key.read_text()
    else:
        pub_pem = sig.public_key_pem
    sig_file = Path(sig.signature_path)
    if not sig_file.exists():
        problems.append(f"signature file '{sig_file}' is missing")
    elif current is not None:
        tmp_pub = settings.state_dir / "tmp" / f"verify-{os.getpid()}.pub.pem"
        tmp_pub.parent.mkdir(parents=True, exist_ok=True)
        tmp_pub.write_text(pub_pem)
        try:
            model_signing.verifying.Config().use_elliptic_key_verifier(
                public_key=tmp_pub
            ).verify(Path(mv.path), sig_file)
        except Exception as exc:  # the library raises ValueError and crypto errors
            msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            problems.append(f"signature check failed: {msg}")
        finally:
            tmp_pub.unlink(missing_ok=True)
    ok = not problems
    sig.status = "valid" if ok else "invalid"
    sig.verified_at = datetime.now(UTC)
    mv.signature_status = "signed" if ok else "invalid"
    audit.append(
        session, actor=settings.actor, action="model.verify", subject=f"model:{mv.ref}",
        payload={"ok": ok, "problems": problems[:20], "key_fingerprint": fingerprint(pub_pem)},
    )
    return ok, problems
