"""The audit trail: list events and verify the hash chain."""

from __future__ import annotations

import typer
from rich.table import Table
from sqlalchemy import select

from ..errors import IntegrityError
from ..store.audit import HEAD_FILE, verify_chain
from ..store.models import AuditEvent
from .common import JSON_OPTION, console, print_json, short, unit

audit_app = typer.Typer(help="The tamper-evident audit trail.", invoke_without_command=True)


@audit_app.callback()
def audit_list(
    ctx: typer.Context,
    limit: int = typer.Option(50, "--limit", help="Show the newest N events (0 = all)."),
    action: str = typer.Option(None, "--action", help="Only events with this action."),
    json_out: bool = JSON_OPTION,
) -> None:
    """List audit events, newest last."""
    if ctx.invoked_subcommand is not None:
        return
    with unit(ctx) as (_settings, session):
        stmt = select(AuditEvent).order_by(AuditEvent.seq.desc())
        if action:
            stmt = stmt.where(AuditEvent.action == action)
        if limit:
            stmt = stmt.limit(limit)
        events = list(reversed(session.execute(stmt).scalars().all()))
        rows = [
            {"seq": e.seq, "ts": e.ts, "actor": e.actor, "action": e.action,
             "subject": e.subject, "payload": e.payload, "prev_hash": e.prev_hash, "hash": e.hash}
            for e in events
        ]
    if json_out:
        print_json(rows)
        return
    t = Table(title="Audit trail", title_justify="left")
    for col in ("#", "time", "actor", "action", "subject", "hash"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r["seq"]), r["ts"][:19], r["actor"], r["action"], r["subject"], short(r["hash"]))
    console.print(t)


@audit_app.command("verify")
def audit_verify(ctx: typer.Context, json_out: bool = JSON_OPTION) -> None:
    """Check the hash chain; exit 1 naming the first bad event if anything was tampered with."""
    with unit(ctx) as (settings, session):
        report = verify_chain(session, head_file=settings.state_dir / HEAD_FILE)
    if json_out:
        print_json({"ok": report.ok, "events": report.events, "head_seq": report.head_seq,
                    "head_hash": report.head_hash, "problem": report.problem,
                    "bad_seq": report.bad_seq})
        if not report.ok:
            raise typer.Exit(1)
        return
    if not report.ok:
        raise IntegrityError(f"audit trail broken: {report.problem}")
    console.print(f"[green]OK[/] audit trail intact: {report.events} events, head {short(report.head_hash)}")


def register(app: typer.Typer) -> None:
    app.add_typer(audit_app, name="audit")
