"""MEASURE commands: ``riskloop assess`` runs a suite and stores it; ``riskloop results`` lists runs."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..assess import suites
from ..assess.runs import run_dict, runs_for
from ..errors import InputError
from ..inventory.refs import resolve_model
from .common import JSON_OPTION, console, err_console, print_json, settings_from, short, unit


def parse_eps(text: str | None) -> list[float] | None:
    """``0.01,0.03`` or ``4/255,8/255`` -> floats; one clear error otherwise."""
    if not text:
        return None
    out = []
    for part in text.split(","):
        part = part.strip()
        try:
            value = float(Fraction(part)) if "/" in part else float(part)
        except (ValueError, ZeroDivisionError):
            raise InputError(f"bad --eps value '{part}': use numbers such as 0.03 or 8/255") from None
        if not value > 0 or value != value or value == float("inf"):
            raise InputError(f"bad --eps value '{part}': eps must be a positive, finite number")
        out.append(value)
    return out


def parse_options(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise InputError(f"bad --option '{item}': expected KEY=VALUE, e.g. pgd.steps=50")
        out[key.strip()] = value.strip()
    return out


def assess(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="MODEL@VER to assess."),
    data: str = typer.Option(..., "--data", "-d", help="DATASET@VER with inputs and labels."),
    suite: str = typer.Option("evasion", "--suite", "-s", help="Assessment suite to run."),
    eps: str = typer.Option(None, "--eps", help="Evasion: attack budgets, comma-separated (0.03 or 8/255)."),
    standard_eps: str = typer.Option(None, "--standard-eps", help="Evasion: the eps the ARS is read at."),
    attacks: str = typer.Option(
        None, "--attacks", help="Evasion: attacks in order (fgsm, pgd, apgd-ce, square, hopskipjump)."
    ),
    option: list[str] = typer.Option(
        None, "--option", "-o", help="Suite option KEY=VALUE (repeatable), e.g. pgd.steps=50 or verify=false (no robustness proofs)."
    ),
    limit: int = typer.Option(None, "--limit", help="Assess a seeded random sample of N rows."),
    seed: int = typer.Option(0, "--seed", help="Random seed for sampling and attacks."),
    trust: bool = typer.Option(
        False, "--trust", help="Load a pickle-based model that no scan has passed (runs its code)."
    ),
    endpoint: str = typer.Option(
        None, "--endpoint", help="Query this JSON HTTP endpoint instead of loading the model (black-box)."
    ),
    query_budget: int = typer.Option(None, "--query-budget", help="Rows the endpoint may be asked, in total."),
    threads: int = typer.Option(
        None, "--threads", help="Torch threads for the attacks (default: torch's choice; 1 is "
        "fastest for small models on a busy machine)."
    ),
    executor: str = typer.Option(
        None, "--executor", help="Where the work runs: 'local' (default) row shards of 256 in a "
        "local process pool (a single shard runs in this process), 'ray' the same shards as Ray "
        "tasks, 'inline' this process without shards (the default with --endpoint)."
    ),
    address: str = typer.Option(None, "--address", help="Ray cluster address (with --executor ray)."),
    workers: int = typer.Option(None, "--workers", help="Local workers / Ray CPUs (default: all cores)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Run an assessment suite on a registered model and store the run with its findings."""
    settings = settings_from(ctx)
    runner = pool = None
    if threads is not None and threads < 1:
        raise InputError(f"bad --threads {threads}: use 1 or more")
    where = executor or ("ray" if address else "inline" if endpoint else "local")
    if endpoint and where != "inline":
        raise InputError(f"--executor {where} cannot share an endpoint's query budget between "
                         "workers: leave --executor out (or use inline) with --endpoint")
    if where != "inline":
        from ..assess.executors import get_executor, runner_for

        pool = get_executor(where, address=address, max_workers=workers, threads=threads)
        runner = runner_for(suite, pool)
    elif address or workers is not None:
        raise InputError("--address and --workers apply to --executor local or ray, not inline")
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    options = parse_options(option)
    eps_list = parse_eps(eps)
    if eps_list:
        options["eps"] = eps_list
    if standard_eps:
        options["standard_eps"] = parse_eps(standard_eps)[0]  # type: ignore[index]
    if attacks:
        options["attacks"] = [a.strip() for a in attacks.split(",") if a.strip()]
    with Progress(TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=err_console, transient=True,
                  disable=not err_console.is_terminal) as bar:
        task = bar.add_task(f"{suite}: loading", total=None)

        def progress(label: str, done: int, total: int) -> None:
            bar.update(task, description=f"{suite}: {label}", completed=done, total=total)

        try:
            out = suites.run_assessment(
                settings, model_ref=model, data_ref=data, suite=suite, options=options, trust=trust,
                endpoint=endpoint, query_budget=query_budget, limit=limit, random_state=seed,
                progress=progress, runner=runner,
            )
        finally:
            if pool is not None:
                pool.close()
    if json_out:
        print_json(out)
        return
    render_run(out)


def render_run(run: dict[str, Any]) -> None:
    m = run["metrics"]
    console.print(f"[bold]{run['suite']}[/] run #{run['id']} of {run.get('model', '')} on "
                  f"{run.get('dataset', '')} (model {short(run['model_digest'])}, data "
                  f"{short(run['dataset_digest'])})")
    if run["suite"] == "evasion" and "per_attack" in m:
        t = Table(title_justify="left")
        for col in ("attack", "eps", "tried", "fooled", "robust", "success", "median", "queries", "s"):
            t.add_column(col, justify="right" if col != "attack" else "left")
        for r in m["per_attack"]:
            med = r["median_perturbation"]
            t.add_row(r["attack"], f"{r['eps']:.4g}", str(r["attacked"]), str(r["fooled"]),
                      f"{r['robust_accuracy']:.3f}", f"{r['success_rate']:.3f}",
                      "-" if med is None else f"{med:.4g}", str(r["queries"]), f"{r['seconds']:.2f}")
        console.print(t)
        curve = ", ".join(f"{p['eps']:.4g}: {p['robust_accuracy']:.3f}" for p in m["curve"])
        console.print(f"robustness curve ({m['norm']}, {m['eps_units']}): {curve}")
        ver = m.get("verification") or {}
        if ver.get("ran"):
            proved = ", ".join(f"{p['eps']:.4g}: {p['verified_accuracy']:.3f}" for p in m["curve"]
                               if p.get("verified_accuracy") is not None)
            console.print(f"proved robust ({ver['method']}, a lower bound; attacks skip these points): {proved}")
        elif ver.get("reason"):
            console.print(f"[dim]no points proved robust: {ver['reason']}[/]")
        console.print(f"clean accuracy {m['clean_accuracy']:.3f}   "
                      f"[bold]ARS {m['ars']:.1%}[/] at eps {m['eps']:.4g}")
    else:
        for k, v in m.items():
            if not isinstance(v, list | dict):
                console.print(f"{k}: {v}")
    for w in run["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    if not run["trustworthy"]:
        console.print("[yellow]this run is marked NOT trustworthy: a gate will not count it[/]")
    for f in run["findings"]:
        console.print(f"[bold]{f['severity']:>8}[/] {f['threat_id']}: {f['title']}")


def results(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="MODEL@VER"),
    suite: str = typer.Option(None, "--suite", "-s", help="Only runs of this suite."),
    json_out: bool = JSON_OPTION,
) -> None:
    """List every stored assessment run of a model version with its findings."""
    with unit(ctx) as (_settings, session):
        mv = resolve_model(session, model)
        runs = [run_dict(r) for r in runs_for(session, mv, suite)]
        for r in runs:
            r["model"] = mv.ref
    if json_out:
        print_json({"model": model, "runs": runs})
        return
    if not runs:
        console.print(f"no assessment runs for {model}: run 'riskloop assess {model} --data DATASET@VER'")
        return
    t = Table(title=f"Assessment runs of {model}", title_justify="left")
    for col in ("run", "suite", "finished", "trustworthy", "headline", "findings"):
        t.add_column(col)
    for r in runs:
        m = r["metrics"]
        head = f"ARS {m['ars']:.1%} @ eps {m['eps']:.4g}" if "ars" in m else ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in list(m.items())[:3] if not isinstance(v, list | dict))
        worst = max((f["severity"] for f in r["findings"]), key=_rank, default="-")
        t.add_row(str(r["id"]), r["suite"], (r["finished_at"] or "")[:19],
                  "yes" if r["trustworthy"] else "NO", head, f"{len(r['findings'])} (worst {worst})")
    console.print(t)
    for r in runs:
        for f in r["findings"]:
            console.print(f"  #{r['id']} [bold]{f['severity']:>8}[/] {f['threat_id']}: {f['title']}")


def _rank(sev: str) -> int:
    order = ["info", "low", "medium", "high", "critical"]
    return order.index(sev) if sev in order else -1


def register(app: typer.Typer) -> None:
    app.command("assess")(assess)
    app.command("results")(results)
