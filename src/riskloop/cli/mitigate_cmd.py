"""MANAGE (technical): ``riskloop mitigate MODEL@VER METHOD --data DATASET@VER``."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import typer
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ..errors import InputError
from ..mitigate.apply import Comparison, MitigationReport, apply_mitigation
from ..mitigate.reassess import split_options
from ..mitigate.registry import ALIASES, MITIGATIONS, method_names
from .common import JSON_OPTION, console, err_console, print_json, settings_from, short

METHOD_HELP = ", ".join(
    [f"{name} ({cls.summary})" for name, cls in MITIGATIONS.items()]
    + [f"{a} (= adversarial-training method {p['method']})" for a, (_, p) in ALIASES.items()]
)


def _number(text: str, what: str) -> float:
    try:
        return float(Fraction(text)) if "/" in text else float(text)
    except (ValueError, ZeroDivisionError):
        raise InputError(f"bad {what} '{text}': use a number such as 0.1 or 16/255") from None


def _int_list(text: str, what: str) -> list[int]:
    try:
        return [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise InputError(f"bad {what} '{text}': use whole numbers separated by commas") from None


def _rows(text: str) -> list[int]:
    """``3,17,42`` or ``@file`` (one row id per line, or comma-separated)."""
    from pathlib import Path

    if text.startswith("@"):
        p = Path(text[1:])
        if not p.exists():
            raise InputError(f"--rows file '{p}' does not exist")
        text = ",".join(p.read_text().split())
    return _int_list(text, "--rows")


def _params(method: str, given: dict[str, Any], extra: list[str] | None) -> dict[str, Any]:
    """Keep the options that were given, and refuse those the method does not take."""
    name = ALIASES.get(method, (method, {}))[0]
    cls = MITIGATIONS.get(name)
    if cls is None:
        raise InputError(f"unknown mitigation '{method}': choose one of {', '.join(method_names())}")
    import inspect

    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "random_state", "flagger"}
    params = {k: v for k, v in given.items() if v is not None}
    for item in extra or []:
        key, eq, value = item.partition("=")
        if not eq:
            raise InputError(f"bad --param '{item}': expected KEY=VALUE, e.g. beta=3")
        key = key.strip().replace("-", "_")
        params[key] = _number(value.strip(), f"--param {key}") if key != "method" else value.strip()
        if isinstance(params[key], float) and params[key].is_integer() and key in (
                "epochs", "batch_size", "steps", "median_size"):
            params[key] = int(params[key])
    bad = sorted(set(params) - accepted)
    if bad:
        flag = "--" + bad[0].replace("_", "-")
        raise InputError(
            f"option {flag} does not apply to '{method}': it takes {', '.join(sorted(accepted))}"
        )
    return params


def mitigate(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="MODEL@VER to mitigate (a PyTorch torchspec model)."),
    method: str = typer.Argument(..., help=f"Mitigation: {METHOD_HELP}."),
    data: str = typer.Option(..., "--data", "-d", help="DATASET@VER to train (or calibrate) on."),
    test: str = typer.Option(
        None, "--test", "-t",
        help="Held-out DATASET@VER for before / after (default: the data of the model's latest "
             "assessment that is not training data).",
    ),
    epochs: int = typer.Option(None, "--epochs", help="Training epochs."),
    lr: float = typer.Option(None, "--lr", help="Adam learning rate."),
    batch_size: int = typer.Option(None, "--batch-size", help="Batch size (expected size for DP)."),
    init: str = typer.Option(None, "--init", help="Adversarial training: parent (fine-tune) or scratch."),
    eps: str = typer.Option(None, "--eps", help="Adversarial training: L-inf budget (0.0627 or 16/255)."),
    steps: int = typer.Option(None, "--steps", help="Adversarial training: attack steps per batch."),
    beta: float = typer.Option(None, "--beta", help="TRADES: weight of the robustness term."),
    temperature: float = typer.Option(None, "--temperature", help="Distillation: temperature T."),
    epsilon: float = typer.Option(None, "--epsilon", help="DP: target epsilon."),
    delta: float = typer.Option(None, "--delta", help="DP: target delta."),
    max_grad_norm: float = typer.Option(None, "--max-grad-norm", help="DP: per-example clipping norm."),
    accountant: str = typer.Option(None, "--accountant", help="DP: prv, rdp or gdp."),
    grad_sample_mode: str = typer.Option(
        None, "--grad-sample-mode", help="DP: per-sample gradients by hooks or ghost clipping."),
    bits: str = typer.Option(None, "--bits", help="Squeezing: bit depths, comma-separated (2,3)."),
    median_size: int = typer.Option(None, "--median-size", help="Squeezing: median window (0 = off)."),
    target_fpr: float = typer.Option(None, "--target-fpr", help="Squeezing: detector FPR on clean data."),
    rows: str = typer.Option(
        None, "--rows", help="Sanitize: row ids to drop (3,17,42 or @FILE); default: label issues."),
    param: list[str] = typer.Option(None, "--param", "-p", help="Other method option KEY=VALUE."),
    suite_option: list[str] = typer.Option(
        None, "--suite-option", "-o",
        help="Option for a re-run suite, SUITE.KEY=VALUE (e.g. privacy.reference_models=0).",
    ),
    limit: int = typer.Option(None, "--limit", help="Compare on a seeded sample of N test rows."),
    no_reassess: bool = typer.Option(
        False, "--no-reassess", help="Skip re-running the targeted assessment suites."),
    seed: int = typer.Option(0, "--seed", help="Random seed for training, sampling and attacks."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Mitigate a model: train or calibrate a new version, register it with lineage, re-run the
    assessments the method targets and print the before / after table."""
    settings = settings_from(ctx)
    given: dict[str, Any] = {
        "epochs": epochs, "lr": lr, "batch_size": batch_size, "init": init,
        "eps": _number(eps, "--eps") if eps else None, "steps": steps, "beta": beta,
        "temperature": temperature, "epsilon": epsilon, "delta": delta,
        "max_grad_norm": max_grad_norm, "accountant": accountant,
        "grad_sample_mode": grad_sample_mode,
        "bits": _int_list(bits, "--bits") if bits else None, "median_size": median_size,
        "target_fpr": target_fpr, "rows": _rows(rows) if rows else None,
    }
    params = _params(method, given, param)
    if limit is not None and limit < 1:
        raise InputError(f"bad --limit {limit}: must be a positive number of rows")
    with Progress(TextColumn("{task.description:<34}"), BarColumn(),
                  TextColumn("{task.completed}/{task.total}"), TimeElapsedColumn(),
                  console=err_console, transient=True,
                  disable=json_out or not err_console.is_terminal) as bar:
        tasks: dict[str, Any] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(phase, total=total)
            bar.update(tasks[phase], completed=done, total=total)

        report = apply_mitigation(
            settings, model=model, method=method, data=data, test=test, params=params,
            suite_options=split_options(suite_option), limit=limit, random_state=seed,
            progress=progress, reassess=not no_reassess,
        )
    if json_out:
        print_json(report.as_dict())
        return
    render_report(report)


def _fmt(row: Comparison, value: Any, side: str) -> str:
    if value is None:
        if row.metric == "epsilon" and side == "before":
            return "inf (not private)"
        return "-"
    if isinstance(value, float):
        if row.metric in ("train_seconds", "epsilon"):
            return f"{value:.2f}"
        return f"{value:.4f}"
    return str(value)


def render_report(report: MitigationReport) -> None:
    t = Table(title=f"{report.method}: {report.parent} -> {report.model}", title_justify="left")
    for col in ("metric", report.parent, report.model, "change"):
        t.add_column(col, justify="left" if col == "metric" else "right")
    for r in report.rows:
        change = r.change
        mark = ""
        if change is not None and r.better and abs(change) > 1e-12:
            good = (change > 0) == (r.better == "higher")
            mark = "[green]" if good else "[red]"
        t.add_row(r.label, _fmt(r, r.before, "before"), _fmt(r, r.after, "after"),
                  "" if change is None else f"{mark}{change:+.4f}")
    console.print(t)
    lineage = f"registered [bold]{report.model}[/] (digest {short(report.digest)}), derived from " \
              f"{report.parent} by {report.method}, trained on {report.new_dataset or report.dataset}"
    console.print(lineage)
    if report.new_dataset:
        console.print(f"cleaned data registered as [bold]{report.new_dataset}[/] "
                      f"(derived from {report.dataset})")
    if report.runs:
        runs = ", ".join(f"{k} #{v}" for k, v in report.runs.items())
        console.print(f"assessment runs stored on {report.model}: {runs}")
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {w}")


def register(app: typer.Typer) -> None:
    app.command("mitigate")(mitigate)
