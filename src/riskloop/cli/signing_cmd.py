"""Signing commands: keygen, sign, verify."""

from __future__ import annotations

from pathlib import Path

import typer

from ..errors import IntegrityError
from ..inventory import signing
from ..inventory.refs import resolve_model
from .common import JSON_OPTION, console, print_json, short, unit


def keygen(
    out: Path = typer.Option(Path("riskloop-key.pem"), "--out", "-o", help="Private key path."),
    force: bool = typer.Option(False, "--force", help="Overwrite existing key files."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Create an EC P-256 signing key pair (KEY.pem, mode 600, and KEY.pub.pem)."""
    priv, pub = signing.keygen(out, force=force)
    fp = signing.fingerprint(pub.read_text())
    if json_out:
        print_json({"private_key": str(priv), "public_key": str(pub), "fingerprint": fp})
    else:
        console.print(f"private key {priv} (keep it secret)\npublic key  {pub}\nfingerprint {short(fp, 16)}")


def sign(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="MODEL@VER"),
    key: Path = typer.Option(..., "--key", help="EC private key (PEM)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Sign a registered model version (OMS signature format, offline)."""
    with unit(ctx) as (settings, session):
        mv = resolve_model(session, ref)
        sig = signing.sign_model(session, settings, mv, key_path=key)
        out = {"model": mv.ref, "digest": mv.digest, "signature": sig.signature_path,
               "key_fingerprint": sig.key_fingerprint}
    if json_out:
        print_json(out)
    else:
        console.print(f"signed {out['model']} -> {out['signature']}")


def verify(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="MODEL@VER"),
    key: Path = typer.Option(None, "--key", help="Public key (default: the key recorded at signing)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Re-hash a model and check its signature; exit 1 on any changed, added or removed file."""
    with unit(ctx) as (settings, session):
        mv = resolve_model(session, ref)
        ok, problems = signing.verify_model(session, settings, mv, public_key=key)
        model_ref = mv.ref
    if json_out:
        print_json({"model": model_ref, "ok": ok, "problems": problems})
        if not ok:
            raise typer.Exit(1)
        return
    if ok:
        console.print(f"[green]OK[/] {model_ref}: signature valid, content unchanged")
        return
    raise IntegrityError(f"{model_ref}: verification failed: {'; '.join(problems)}")


def register(app: typer.Typer) -> None:
    app.command("keygen")(keygen)
    app.command("sign")(sign)
    app.command("verify")(verify)
