"""API tokens for the REST API and dashboard: create, list, revoke."""

from __future__ import annotations

import typer
from rich.table import Table

from ..service import tokens
from .common import JSON_OPTION, console, print_json, unit

token_app = typer.Typer(help="API tokens for the REST API and the dashboard (admin).",
                        no_args_is_help=True)


@token_app.command("create")
def create(
    ctx: typer.Context,
    role: str = typer.Option(..., "--role", help=f"One of {', '.join(tokens.ROLES)}."),
    owner: str = typer.Option(..., "--owner", help="Person or service the token belongs to."),
    note: str = typer.Option("", "--note", help="What the token is for."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Create a token; it is printed once and only its hash is stored."""
    with unit(ctx) as (settings, session):
        rec, secret = tokens.create_token(session, owner=owner, role=role, actor=settings.actor,
                                          note=note)
        out = {"prefix": rec.prefix, "owner": rec.owner, "role": rec.role, "token": secret}
    if json_out:
        print_json(out)
    else:
        console.print(f"token for [bold]{out['owner']}[/] ({out['role']}), shown only once:")
        console.print(secret, soft_wrap=True, highlight=False)


@token_app.command("list")
def list_(ctx: typer.Context, json_out: bool = JSON_OPTION) -> None:
    """List tokens (prefix, owner, role; never the secret)."""
    with unit(ctx) as (_settings, session):
        rows = tokens.list_tokens(session)
    if json_out:
        print_json(rows)
        return
    t = Table(title="API tokens", title_justify="left")
    for col in ("prefix", "owner", "role", "created", "revoked", "note"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["prefix"], r["owner"], r["role"], r["created_at"][:19],
                  "yes" if r["revoked"] else "no", r["note"])
    console.print(t)


@token_app.command("revoke")
def revoke(
    ctx: typer.Context,
    prefix: str = typer.Argument(..., help="Token prefix (from 'riskloop token list')."),
) -> None:
    """Revoke a token at once."""
    with unit(ctx) as (settings, session):
        rec = tokens.revoke(session, prefix=prefix, actor=settings.actor)
        console.print(f"revoked token {rec.prefix} of {rec.owner}")


def register(app: typer.Typer) -> None:
    app.add_typer(token_app, name="token")
