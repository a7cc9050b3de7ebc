"""``riskloop simulate``: bounded, seeded traffic against a running gateway on loopback."""

from __future__ import annotations

import typer
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table

from ..monitor.simulate import MAX_REQUESTS, SCENARIOS, TrafficSimulator
from .common import JSON_OPTION, console, print_json, settings_from


def simulate(
    ctx: typer.Context,
    deployment: str = typer.Argument(..., metavar="DEPLOYMENT"),
    scenario: str = typer.Option(..., "--scenario", help=f"One of: {', '.join(SCENARIOS)}."),
    url: str = typer.Option("http://127.0.0.1:8000", "--url", help="The gateway (loopback only)."),
    rate: float = typer.Option(20.0, "--rate", help="Requests per second at most."),
    duration: float = typer.Option(10.0, "--duration", help="Seconds to run at most."),
    max_requests: int = typer.Option(1000, "--max-requests",
                                     help=f"Hard cap on requests (at most {MAX_REQUESTS})."),
    batch: int = typer.Option(5, "--batch", help="Rows per request at most (clean, drift, evasion)."),
    data: str = typer.Option(None, "--data", help="Clean DATASET@VER to draw rows from "
                             "(default: the deployment's held-out data)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Send one scenario's traffic (clean, drift, evasion, extraction, poisoned-feed) to a gateway
    and report what it answered and which alerts and incidents the store recorded."""
    settings = settings_from(ctx)
    sim = TrafficSimulator(scenario=scenario, rate=rate, duration=duration,
                           max_requests=max_requests, batch=batch, data=data, random_state=seed)
    if json_out:
        out = sim.run(settings, deployment=deployment, url=url)
        print_json(out.as_dict())
        return
    total = min(max_requests, int(rate * duration) + 1)
    with Progress(TextColumn("{task.description:<24}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total} requests"), console=console,
                  transient=True) as bar:
        task = bar.add_task(f"{scenario} → {deployment}", total=total)
        out = sim.run(settings, deployment=deployment, url=url,
                      progress=lambda done, _cap: bar.update(task, completed=min(done, total)))
    console.print(f"{out.requests} requests ({out.rows} rows) in {out.seconds:.1f}s, stopped by "
                  f"{out.stopped_by}; status {out.status}; served by {out.served_by}")
    if out.alerts:
        t = Table(title="Alerts", title_justify="left")
        for col in ("id", "kind", "threat", "client", "severity"):
            t.add_column(col)
        for a in out.alerts:
            t.add_row(str(a["id"]), a["kind"], a["threat_id"] or "-", a["client"] or "-", a["severity"])
        console.print(t)
    else:
        console.print("no alerts")
    for inc in out.incidents:
        console.print(f"incident {inc['id']}: {inc['state']} · {inc['classification']} · "
                      f"{inc['severity']} · mode {inc['mode']} — {inc['summary']}")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
