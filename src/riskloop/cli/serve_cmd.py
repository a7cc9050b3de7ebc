"""MONITOR commands for the gateway: serve, deploy, deployment, client-key, review."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..errors import InputError
from ..monitor import deployments as deps
from ..monitor import review as review_mod
from ..store.db import check_ready
from .common import JSON_OPTION, console, print_json, settings_from, short, unit

deployment_app = typer.Typer(help="List deployments, show one, change its mode or fallback rules.",
                             no_args_is_help=True)
key_app = typer.Typer(help="API keys of a deployment's clients (the gateway knows who asks).",
                      no_args_is_help=True)
review_app = typer.Typer(help="The human review queue of low-confidence predictions.",
                         no_args_is_help=True)

POLICY_OPTION = typer.Option(
    None, "--policy", "-p", envvar="RISKLOOP_POLICY",
    help="Policy YAML (default: riskloop-policy.yaml in the workspace, else the built-in default).",
)


def _policy(ctx: typer.Context, path: Path | None):  # type: ignore[no-untyped-def]
    from ..govern import policy as policy_mod

    return policy_mod.load(path, workspace=settings_from(ctx).workspace)


def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="TCP port to listen on."),
    max_body: int = typer.Option(1_048_576, "--max-body", help="Largest request body in bytes."),
    max_rows: int = typer.Option(256, "--max-rows", help="Most rows in one predict request."),
) -> None:
    """Run the guarded inference gateway and the risk console (FastAPI + uvicorn) until interrupted."""
    import uvicorn

    from ..service import GatewayOptions, create_app

    if not 0 < port < 65536:
        raise InputError(f"--port {port} is not a TCP port: use 1..65535")
    if max_body < 1024 or max_rows < 1:
        raise InputError("--max-body must be at least 1024 bytes and --max-rows at least 1")
    settings = settings_from(ctx)
    check_ready(settings)
    import torch

    # requests run in parallel threads: one intra-op thread each avoids oversubscription
    torch.set_num_threads(1)
    app = create_app(settings, options=GatewayOptions(max_body=max_body, max_rows=max_rows))
    console.print(f"riskloop gateway on http://{host}:{port} (metrics at /metrics)", highlight=False)
    console.print(f"risk console at http://{host}:{port}/ (sign in with a token from "
                  "'riskloop init' or 'riskloop token create')", highlight=False)
    uvicorn.run(app, host=host, port=port, log_level="warning")


def deploy(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="MODEL@VER to serve."),
    name: str = typer.Option(..., "--name", "-n", help="Deployment name (used in the URL)."),
    mode: str = typer.Option("active", "--mode", help="active, shadow, fallback or off."),
    fallback: Path = typer.Option(None, "--fallback", help="Fallback rules YAML (needed by shadow and fallback)."),
    reference: str = typer.Option(None, "--reference", help="DATASET@VER to profile drift against (default: the training data)."),
    holdout: str = typer.Option(None, "--holdout", help="Clean held-out DATASET@VER to calibrate the watchdogs on."),
    window: int = typer.Option(None, "--window", help="Rows per drift window (default 500)."),
    like: str = typer.Option(None, "--like", help="Reuse the references and calibration of this deployment (same model version)."),
    policy: Path = POLICY_OPTION,
    trust: bool = typer.Option(False, "--trust", help="Allow a pickle-based model that was not scanned."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Create a deployment; only a model whose gate is GO (or signed off) may be active."""
    with unit(ctx) as (settings, session):
        pol = _policy(ctx, policy)
        dep = deps.create(session, settings, model=model, name=name, actor=settings.actor,
                          mode=mode, fallback=fallback, reference=reference, holdout=holdout,
                          policy=pol, trust=trust, window=window, like=like)
        out = deps.deployment_dict(session, dep, detail=True)
    if json_out:
        print_json(out)
        return
    console.print(f"deployed [bold]{out['model']}[/] as [bold]{out['name']}[/] in mode {out['mode']} "
                  f"(review below confidence {out['review_below']:g})")
    for wname, cal in out["watchdogs"].items():
        console.print(f"  watchdog {wname}: measured false-positive rate {_pct(cal['fpr'])} per "
                      f"{cal['unit']} (target {_pct(cal['target_fpr'])})")
    for w in out["warnings"]:
        console.print(f"  [yellow]warning[/]: {w}")
    console.print(f"next: riskloop client-key create {out['name']} --client NAME; riskloop serve")


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2%}"


@deployment_app.command("list")
def deployment_list(ctx: typer.Context, json_out: bool = JSON_OPTION) -> None:
    """Every deployment with its model, mode and counts."""
    with unit(ctx) as (_s, session):
        rows = [deps.deployment_dict(session, d) for d in deps.list_all(session)]
    if json_out:
        print_json(rows)
        return
    t = Table(title="Deployments", title_justify="left")
    for col in ("name", "model", "mode", "fallback", "predictions", "alerts", "open reviews"):
        t.add_column(col)
    for d in rows:
        t.add_row(d["name"], d["model"], d["mode"], short((d["fallback"] or {}).get("digest")) or "-",
                  str(d["predictions"]), str(d["alerts"]), str(d["review"]["open"]))
    console.print(t)


@deployment_app.command("show")
def deployment_show(ctx: typer.Context, name: str = typer.Argument(...), json_out: bool = JSON_OPTION) -> None:
    """One deployment: references, calibrated watchdogs, recent alerts, clients."""
    with unit(ctx) as (_s, session):
        out = deps.deployment_dict(session, deps.get(session, name), detail=True)
    if json_out:
        print_json(out)
        return
    console.print(f"[bold]{out['name']}[/]: {out['model']} in mode {out['mode']}, "
                  f"{out['predictions']} predictions, {out['alerts']} alerts, "
                  f"{out['review']['open']} open reviews")
    for wname, cal in out["watchdogs"].items():
        console.print(f"  watchdog {wname}: FPR {_pct(cal['fpr'])} per {cal['unit']}")
    for a in out["recent_alerts"]:
        console.print(f"  alert #{a['id']} {a['kind']} ({a['severity']}) client {a['client'] or '-'} "
                      f"at {a['created_at']}")


@deployment_app.command("mode")
def deployment_mode(
    ctx: typer.Context,
    name: str = typer.Argument(...),
    mode: str = typer.Argument(..., help="active, shadow, fallback or off."),
    reason: str = typer.Option("", "--reason", help="Why (kept in the audit trail)."),
    policy: Path = POLICY_OPTION,
) -> None:
    """Switch a deployment's mode; a running gateway follows within a second."""
    with unit(ctx) as (settings, session):
        pol = _policy(ctx, policy) if mode == "active" else None
        dep = deps.set_mode(session, settings, name=name, mode=mode, actor=settings.actor,
                            reason=reason, policy=pol)
        out = {"name": dep.name, "mode": dep.mode}
    console.print(f"deployment [bold]{out['name']}[/] is now in mode {out['mode']}")


@deployment_app.command("rules")
def deployment_rules(
    ctx: typer.Context, name: str = typer.Argument(...),
    path: Path = typer.Argument(..., help="Fallback rules YAML."),
) -> None:
    """Attach or replace a deployment's fallback rules."""
    with unit(ctx) as (settings, session):
        dep = deps.set_rules(session, name=name, path=path, actor=settings.actor)
        digest = dep.fallback_rules["digest"] if dep.fallback_rules else ""
    console.print(f"deployment [bold]{name}[/] answers with rules {short(digest)} in shadow and fallback modes")


@deployment_app.command("alerts")
def deployment_alerts(
    ctx: typer.Context, name: str = typer.Argument(...),
    limit: int = typer.Option(50, "--limit", help="Newest N alerts."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Alerts the gateway raised for a deployment, newest first."""
    with unit(ctx) as (_s, session):
        rows = deps.recent_alerts(session, deps.get(session, name).id, limit=limit)
    if json_out:
        print_json(rows)
        return
    t = Table(title=f"Alerts of {name}", title_justify="left")
    for col in ("id", "kind", "severity", "threat", "client", "at"):
        t.add_column(col)
    for a in rows:
        t.add_row(str(a["id"]), a["kind"], a["severity"], a["threat_id"] or "-", a["client"] or "-",
                  a["created_at"])
    console.print(t)


@key_app.command("create")
def key_create(
    ctx: typer.Context,
    deployment: str = typer.Argument(..., help="Deployment name."),
    client: str = typer.Option(..., "--client", help="Who will use the key."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Create an API key; it is printed once and only its hash is stored."""
    with unit(ctx) as (settings, session):
        rec, key = deps.create_key(session, name=deployment, client=client, actor=settings.actor)
        out = {"id": rec.id, "deployment": deployment, "client": client, "key": key}
    if json_out:
        print_json(out)
        return
    console.print(f"API key for client [bold]{client}[/] of {deployment} (shown once, send it as "
                  "X-API-Key):")
    typer.echo(key)


@key_app.command("list")
def key_list(ctx: typer.Context, deployment: str = typer.Argument(...), json_out: bool = JSON_OPTION) -> None:
    """Keys of a deployment (prefixes only)."""
    with unit(ctx) as (_s, session):
        rows = deps.list_keys(session, name=deployment)
    if json_out:
        print_json(rows)
        return
    t = Table(title=f"Client keys of {deployment}", title_justify="left")
    for col in ("id", "client", "prefix", "created", "revoked"):
        t.add_column(col)
    for k in rows:
        t.add_row(str(k["id"]), k["client"], k["prefix"], k["created_at"], k["revoked_at"] or "-")
    console.print(t)


@key_app.command("revoke")
def key_revoke(ctx: typer.Context, key_id: int = typer.Argument(..., help="Key id (from 'client-key list').")) -> None:
    """Revoke a key; the gateway refuses it within a second."""
    with unit(ctx) as (settings, session):
        rec = deps.revoke_key(session, key_id=key_id, actor=settings.actor)
        client = rec.client
    console.print(f"revoked key {key_id} of client {client}")


@review_app.command("list")
def review_list(
    ctx: typer.Context,
    deployment: str = typer.Option(None, "--deployment", "-d", help="Only this deployment."),
    status: str = typer.Option("open", "--status", help="open, decided or all."),
    limit: int = typer.Option(100, "--limit", help="At most N items, oldest first."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Predictions waiting for (or decided by) a human reviewer."""
    with unit(ctx) as (_s, session):
        rows = review_mod.list_items(session, deployment=deployment,
                                     status=None if status == "all" else status, limit=limit)
    if json_out:
        print_json(rows)
        return
    t = Table(title="Review queue", title_justify="left")
    for col in ("id", "deployment", "status", "model answer", "confidence", "reason", "client", "label"):
        t.add_column(col)
    for r in rows:
        conf = "-" if r["confidence"] is None else f"{r['confidence']:.3f}"
        t.add_row(str(r["id"]), str(r["deployment"]), r["status"], str(r["model_answer"]), conf,
                  r["reason"], r["client"] or "-", r["label"] or "-")
    console.print(t)


@review_app.command("decide")
def review_decide(
    ctx: typer.Context,
    item_id: int = typer.Argument(..., help="Review item id."),
    label: str = typer.Option(..., "--label", help="The correct answer for this input."),
    note: str = typer.Option(None, "--note", help="Why (kept in the audit trail)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Decide a review item; the label feeds performance-drift monitoring."""
    with unit(ctx) as (settings, session):
        item = review_mod.decide(session, item_id=item_id, label=label, actor=settings.actor, note=note)
        out = review_mod.review_dict(item)
    if json_out:
        print_json(out)
        return
    agree = "agrees with" if out["model_answer"] == out["label"] else "overrides"
    console.print(f"review item {item_id} decided as '{out['label']}' ({agree} the model's "
                  f"'{out['model_answer']}')")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("deploy")(deploy)
    app.add_typer(deployment_app, name="deployment")
    app.add_typer(key_app, name="client-key")
    app.add_typer(review_app, name="review")
