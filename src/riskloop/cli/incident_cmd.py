"""Incidents and the response playbook: list, show, contain, recover, close, report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ..inventory.assets import model_dict
from ..monitor import incidents
from ..monitor.incident_report import render_markdown
from ..store.models import Incident
from .common import JSON_OPTION, console, print_json, unit

incident_app = typer.Typer(help="AI incidents: identify, contain, recover, close (paper 5.2.2).",
                           no_args_is_help=True)


@incident_app.command("list")
def list_(
    ctx: typer.Context,
    all_: bool = typer.Option(False, "--all", help="Include closed incidents."),
    json_out: bool = JSON_OPTION,
) -> None:
    """List open incidents (or all with --all)."""
    with unit(ctx) as (_s, session):
        q = session.query(Incident).order_by(Incident.id)
        if not all_:
            q = q.filter(Incident.state.in_(incidents.OPEN_STATES))
        rows = [incidents.incident_dict(i) for i in q]
    if json_out:
        print_json(rows)
        return
    t = Table(title="Incidents", title_justify="left")
    for col in ("id", "state", "class", "severity", "deployment", "model", "mode", "detected",
                "report by"):
        t.add_column(col)
    for r in rows:
        t.add_row(str(r["id"]), r["state"], r["classification"], r["severity"], r["deployment"],
                  r["model"], r["mode"], (r["detected_at"] or "")[:19],
                  (r["report_deadline"] or "-")[:19])
    console.print(t)


@incident_app.command("show")
def show(ctx: typer.Context, incident_id: int = typer.Argument(..., metavar="ID"),
         json_out: bool = JSON_OPTION) -> None:
    """Show one incident with its signals and timeline."""
    with unit(ctx) as (_s, session):
        d = incidents.incident_dict(incidents.get_incident(session, incident_id))
    if json_out:
        print_json(d)
        return
    console.print(f"[bold]incident {d['id']}[/] {d['state']} · {d['classification']} · "
                  f"{d['severity']} · {d['deployment']} ({d['model']}), mode {d['mode']}")
    console.print(f"  {d['summary']}")
    if d["report_deadline"]:
        console.print(f"  report by {d['report_deadline']}: {d['report_basis']}")
    t = Table(title="Timeline", title_justify="left")
    for col in ("time", "step", "from", "to", "by"):
        t.add_column(col)
    for s in d["transitions"]:
        t.add_row((s["at"] or "")[:19], s["action"], s["from"] or "-", s["to"], s["actor"])
    console.print(t)


@incident_app.command("contain")
def contain(
    ctx: typer.Context,
    incident_id: int = typer.Argument(..., metavar="ID"),
    mode: str = typer.Option("fallback", "--mode", help="fallback (rules answer) or shadow."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Switch the affected deployment to fallback or shadow mode."""
    with unit(ctx) as (settings, session):
        inc = incidents.contain(session, incidents.get_incident(session, incident_id),
                                actor=settings.actor, mode=mode)
        d = incidents.incident_dict(inc)
    if json_out:
        print_json(d)
    else:
        console.print(f"incident {d['id']} contained: deployment {d['deployment']} now in "
                      f"{d['mode']} mode")


@incident_app.command("recover")
def recover(
    ctx: typer.Context,
    incident_id: int = typer.Argument(..., metavar="ID"),
    method: str = typer.Option(None, "--method", help="sanitize or adversarial-training "
                               "(default: from the incident's signals)."),
    data: str = typer.Option(None, "--data", help="Training DATASET@VER (default: the model's)."),
    test: str = typer.Option(None, "--test", help="Held-out DATASET@VER for before / after."),
    policy: Path = typer.Option(None, "--policy", help="Policy file for the gate."),
    epochs: int = typer.Option(None, "--epochs", help="Training epochs of the mitigation."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    model: str = typer.Option(None, "--model", help="Redeploy this recovered MODEL@VER (e.g. once "
                              "it has the sign-off its tier needs) instead of retraining."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Sanitize / retrain, re-assess, gate, and redeploy only when the gate passes.

    A recovered version that the gate refused (say, a high-risk model waiting for its
    sign-off) can be redeployed later with --model once it passes."""
    from ..monitor.recovery import recover as run_recovery
    from .common import settings_from

    settings = settings_from(ctx)
    with console.status(f"recovering incident {incident_id}: mitigate, re-assess, gate"):
        rep = run_recovery(settings, incident_id=incident_id, actor=settings.actor, method=method,
                           data=data, test=test, policy_path=policy,
                           params={"epochs": epochs} if epochs else None, random_state=seed,
                           model=model)
    if json_out:
        print_json(rep.as_dict())
        return
    console.print(f"incident {rep.incident}: {rep.method} → {rep.new_model}; gate {rep.decision}")
    if rep.restored:
        console.print(f"  redeployed {rep.new_model} (mode {rep.mode}); time to restore "
                      f"{(rep.time_to_restore_seconds or 0) / 60:.1f} min")
    else:
        console.print(f"  not redeployed ({', '.join(rep.failing) or 'sign-off pending'}): the "
                      f"deployment stays in {rep.mode} mode and the incident contained; once "
                      f"{rep.new_model} passes, run 'riskloop incident recover {rep.incident} "
                      f"--model {rep.new_model}'")


@incident_app.command("close")
def close(
    ctx: typer.Context,
    incident_id: int = typer.Argument(..., metavar="ID"),
    note: str = typer.Option("", "--note", help="Closing note (what was validated)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Close a restored incident; its time to restore counts towards MTTR."""
    with unit(ctx) as (settings, session):
        inc = incidents.close(session, incidents.get_incident(session, incident_id),
                              actor=settings.actor, note=note)
        d = incidents.incident_dict(inc)
    if json_out:
        print_json(d)
    else:
        console.print(f"incident {d['id']} closed; time to restore "
                      f"{(d['time_to_restore_seconds'] or 0) / 60:.1f} min")


@incident_app.command("report")
def report(
    ctx: typer.Context,
    incident_id: int = typer.Argument(..., metavar="ID"),
    out: Path = typer.Option(None, "-o", "--out", help="Write the Markdown draft to this file."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Draft the incident record (Markdown), marking what a person must still write."""
    with unit(ctx) as (_s, session):
        inc = incidents.get_incident(session, incident_id)
        d = incidents.incident_dict(inc)
        text = render_markdown(d, model=model_dict(inc.model))
    if json_out:
        print_json({**d, "markdown": text})
    elif out:
        out.write_text(text)
        console.print(f"wrote {out}")
    else:
        console.print(text, markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(incident_app, name="incident")
