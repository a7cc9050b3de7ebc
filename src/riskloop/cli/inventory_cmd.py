"""MAP commands: init, register, inventory, show, lineage."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table
from rich.tree import Tree

from ..errors import NotFoundError
from ..inventory import assets
from ..inventory.profiles import DOMAINS, TIERS
from ..inventory.refs import resolve_dataset, resolve_model
from ..service import tokens
from ..store import db
from .common import JSON_OPTION, console, print_json, settings_from, short, unit

register_app = typer.Typer(help="Register a dataset or a model version in the inventory.",
                           no_args_is_help=True)


def init(ctx: typer.Context, json_out: bool = JSON_OPTION) -> None:
    """Create or migrate the store (alembic upgrade head) in the workspace."""
    settings = settings_from(ctx)
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    head = db.upgrade(settings)
    where = str(settings.state_dir / "riskloop.db") if settings.is_default_sqlite else "RISKLOOP_DB_URL"
    admin_token = None
    with unit(ctx) as (_s, session):
        if not tokens.has_admin(session):
            _rec, admin_token = tokens.create_token(
                session, owner=settings.actor, role="admin", actor=settings.actor,
                note="first admin token, printed once by riskloop init",
            )
    if json_out:
        print_json({"workspace": str(settings.workspace), "database": where, "revision": head,
                    "admin_token": admin_token})
        return
    console.print(f"riskloop store ready at [bold]{where}[/] (schema {head})")
    if admin_token:
        console.print("first admin API token (shown once; create more with 'riskloop token create'):")
        console.print(admin_token, soft_wrap=True, highlight=False)


def _csv(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").split(",") if v.strip()]


@register_app.command("dataset")
def register_dataset(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="CSV, Parquet or NPZ file, or a folder."),
    name: str = typer.Option(..., "--name", "-n", help="Dataset name."),
    version: int = typer.Option(None, "--version", help="Version number (default: next)."),
    sensitive: str = typer.Option(None, "--sensitive", help="Sensitive columns, comma-separated."),
    target: str = typer.Option(None, "--target", help="Label column (or NPZ array)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Register a dataset version: content digest, rows, schema, sensitive attributes."""
    with unit(ctx) as (settings, session):
        ds = assets.register_dataset(
            session, path=path, name=name, version=version, sensitive=_csv(sensitive),
            target=target, actor=settings.actor,
        )
        out = assets.dataset_dict(ds)
    if json_out:
        print_json(out)
    else:
        console.print(
            f"registered dataset [bold]{out['ref']}[/] ({out['format']}, {out['rows']} rows, "
            f"digest {short(out['digest'])})"
        )


@register_app.command("model")
def register_model(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="Model file or folder."),
    name: str = typer.Option(..., "--name", "-n", help="Model name."),
    framework: str = typer.Option(..., "--framework", help="torch, sklearn or onnx."),
    domain: str = typer.Option(..., "--domain", help=f"Application domain: {', '.join(DOMAINS)}."),
    version: int = typer.Option(None, "--version", help="Version number (default: next)."),
    trained_on: list[str] = typer.Option(
        None, "--trained-on", help="DATASET@VER it was trained on (repeatable)."
    ),
    derived_from: str = typer.Option(None, "--derived-from", help="MODEL@VER it derives from."),
    owner: str = typer.Option(None, "--owner", help="Accountable owner."),
    intended_use: str = typer.Option(None, "--intended-use", help="Intended use, one sentence."),
    tier: str = typer.Option(None, "--tier", help=f"Override the EU AI Act tier: {', '.join(TIERS)}."),
    tier_reason: str = typer.Option(None, "--tier-reason", help="Why the tier override applies."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Register a model version with lineage and a risk profile from its domain."""
    with unit(ctx) as (settings, session):
        mv = assets.register_model(
            session, path=path, name=name, framework=framework, domain=domain, version=version,
            trained_on=trained_on or [], derived_from=derived_from, owner=owner,
            intended_use=intended_use, tier=tier, tier_reason=tier_reason, actor=settings.actor,
        )
        out = assets.model_dict(mv)
    if json_out:
        print_json(out)
    else:
        console.print(
            f"registered model [bold]{out['ref']}[/] ({out['format']}, domain {out['domain']}, "
            f"tier {out['tier']}, digest {short(out['digest'])})"
        )


def inventory(ctx: typer.Context, json_out: bool = JSON_OPTION) -> None:
    """List every registered model and dataset version."""
    with unit(ctx) as (_settings, session):
        models = [assets.model_dict(m) for m in assets.list_models(session)]
        datasets = [assets.dataset_dict(d) for d in assets.list_datasets(session)]
    if json_out:
        print_json({"models": models, "datasets": datasets})
        return
    render_inventory(models, datasets)


def render_inventory(models: list[dict], datasets: list[dict]) -> None:
    t = Table(title="Models", title_justify="left")
    for col in ("model", "format", "domain", "tier", "stage", "signature", "scan", "digest",
                "trained on", "derived from"):
        t.add_column(col)
    for m in models:
        t.add_row(m["ref"], m["format"], m["domain"], m["tier"], m["stage"],
                  m["signature_status"], m["scan_status"], short(m["digest"]),
                  ", ".join(m["trained_on"]) or "-", m["derived_from"] or "-")
    console.print(t)
    d = Table(title="Datasets", title_justify="left")
    for col in ("dataset", "format", "rows", "columns", "sensitive", "target", "digest"):
        d.add_column(col)
    for ds in datasets:
        d.add_row(ds["ref"], ds["format"], str(ds["rows"]), str(len(ds["schema"])),
                  ", ".join(ds["sensitive"]) or "-", ds["target"] or "-", short(ds["digest"]))
    console.print(d)


def show(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="MODEL@VER or DATASET@VER (models are looked up first)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Show one model (or dataset) version: digest, risk profile, lineage, status."""
    with unit(ctx) as (_settings, session):
        try:
            out = assets.model_dict(resolve_model(session, ref))
            kind = "model"
        except NotFoundError:
            try:
                out = assets.dataset_dict(resolve_dataset(session, ref))
            except NotFoundError:
                raise NotFoundError(
                    f"unknown model or dataset '{ref}': run 'riskloop inventory' to list what is registered"
                ) from None
            kind = "dataset"
    if json_out:
        print_json({"kind": kind, **out})
        return
    t = Table(title=f"{kind} {out['ref']}", show_header=False, title_justify="left")
    t.add_column("field", style="bold")
    t.add_column("value")
    for k, v in out.items():
        t.add_row(k, str(v))
    console.print(t)


def lineage(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="MODEL@VER"),
    json_out: bool = JSON_OPTION,
) -> None:
    """Show the model versions a model derives from and the datasets it was trained on."""
    with unit(ctx) as (_settings, session):
        tree = assets.lineage_tree(resolve_model(session, ref))
    if json_out:
        print_json(tree)
        return
    console.print(_render_tree(tree))


def _render_tree(node: dict, parent: Tree | None = None) -> Tree:
    method = node.get("derivation", {}).get("method")
    label = f"[bold]model {node['model']}[/] {short(node['digest'])}" + (
        f" [dim](via {method})[/]" if method else ""
    )
    branch = Tree(label) if parent is None else parent.add(label)
    for ds in node["trained_on"]:
        _add_dataset(branch, ds)
    if node.get("derived_from"):
        _render_tree(node["derived_from"], branch.add("[dim]derived from[/]"))
    return branch


def _add_dataset(parent: Tree, ds: dict) -> None:
    method = ds.get("derivation", {}).get("method")
    label = f"trained on dataset {ds['dataset']} {short(ds['digest'])}" + (
        f" [dim](via {method})[/]" if method else ""
    )
    sub = parent.add(label)
    if ds.get("derived_from"):
        _add_dataset(sub.add("[dim]derived from[/]"), ds["derived_from"])


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.add_typer(register_app, name="register")
    app.command("inventory")(inventory)
    app.command("show")(show)
    app.command("lineage")(lineage)
