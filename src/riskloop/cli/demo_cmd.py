"""``riskloop demo``: the whole loop on the bundled digits scenario."""

from __future__ import annotations

from pathlib import Path

import typer

from ..config import load_settings
from ..demo import scenario
from .common import JSON_OPTION, console, print_json
from .inventory_cmd import render_inventory


def demo(
    ctx: typer.Context,
    workspace: Path = typer.Option(
        None, "--workspace", "-w",
        help="Folder for the demo (default: ./riskloop-demo). Reset if it holds an earlier demo.",
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed for data split and training."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Run the bundled scenario: train, register, sign, assess, gate, mitigate, monitor."""
    root_ws = (ctx.find_root().obj or {}).get("workspace")
    target = Path(workspace or (Path(root_ws) / "riskloop-demo" if root_ws else "riskloop-demo"))
    ws = scenario.prepare_workspace(target)
    settings = load_settings(workspace=ws)
    results: dict[str, dict] = {}
    for title, data in scenario.run(settings, random_state=seed):
        results[title] = data
        if json_out:
            continue
        if title == "inventory":
            render_inventory(data["models"], data["datasets"])
        else:
            summary = ", ".join(f"{k}={v}" for k, v in data.items() if not isinstance(v, list | dict))
            console.print(f"[bold cyan]{title:>10}[/] {summary}")
    if json_out:
        print_json(results)
    else:
        console.print(f"\ndemo workspace: {ws}  (try: riskloop --workspace {ws} inventory)")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
