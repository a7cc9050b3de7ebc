"""MEASURE: ``riskloop scan`` (model-file supply chain) and ``riskloop trust``."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from ..assess.supply_chain import ScanReport, load_policy, scan_paths, to_sarif
from ..assess.supply_chain.gate import record_scan, set_trust
from ..errors import InputError
from ..inventory.refs import resolve_model
from .common import JSON_OPTION, console, print_json, unit

FORMATS = ("table", "json", "sarif")
_STYLE = {"clean": "green", "needs-trust": "yellow", "malicious": "bold red"}


def scan(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(None, help="Files or folders to scan (folders recursively)."),
    fmt: str = typer.Option("table", "--format", "-f", help="Output: table, json or sarif."),
    policy: str = typer.Option(
        "default", "--policy",
        help="'default', or a TOML/YAML/JSON file with allow, deny and budgets.",
    ),
    output: Path = typer.Option(None, "--output", "-o", help="Write the report to this file."),
    model: str = typer.Option(
        None, "--model",
        help="Rescan a registered MODEL@VER and record the run and its scan status.",
    ),
) -> None:
    """Scan model files for code that runs when they load; exit 0 clean, 1 findings, 2 error.

    Formats are detected by content. Every global a pickle would import is checked against an
    allowlist; dangerous globals are critical, unknown ones need an explicit trust decision
    ('riskloop trust'). Nothing in a scanned file is ever imported or executed.
    """
    if fmt not in FORMATS:
        raise InputError(f"unknown --format '{fmt}': choose one of {', '.join(FORMATS)}")
    pol = load_policy(policy)
    if model:
        if paths:
            raise InputError("give either PATHs or --model, not both")
        with unit(ctx) as (settings, session):
            mv = resolve_model(session, model)
            run, full = record_scan(session, mv, actor=settings.actor, policy=pol)
            report = full if fmt != "table" or output else None
            summary = {"model": mv.ref, "run": run.id, "scan_status": mv.scan_status,
                       **{k: run.metrics.get(k) for k in ("files", "critical", "needs_trust")}}
        if report is None:
            console.print(f"scanned {summary['model']}: [{_STYLE[summary['scan_status']]}]"
                          f"{summary['scan_status']}[/] (run #{summary['run']}, "
                          f"{summary['critical']} critical, {summary['needs_trust']} need trust)")
            if summary["scan_status"] != "clean":
                raise typer.Exit(1)
            return
    else:
        if not paths:
            raise InputError("nothing to scan: give one or more PATHs (or --model MODEL@VER)")
        report = scan_paths(list(paths), pol)
    _emit(report, fmt, output)
    if report.verdict != "clean":
        raise typer.Exit(1)


def _emit(report: ScanReport, fmt: str, output: Path | None) -> None:
    if fmt == "table":
        if output:
            output.write_text(json.dumps(report.as_dict(), indent=2, default=str) + "\n")
        render(report)
        return
    data = report.as_dict() if fmt == "json" else to_sarif(report)
    if output:
        output.write_text(json.dumps(data, indent=2, default=str) + "\n")
        console.print(f"wrote {fmt} report to {output} ({report.verdict})")
    else:
        print_json(data)


def render(report: ScanReport) -> None:
    files = Table(title="Model-file scan", title_justify="left")
    for col in ("verdict", "file", "format", "size", "critical", "needs trust"):
        files.add_column(col)
    for f in report.files:
        crit = sum(i.verdict == "malicious" for i in f.issues)
        files.add_row(f"[{_STYLE[f.verdict]}]{f.verdict}[/]", escape(f.path), f.format,
                      f"{f.size:,}", str(crit), str(len(f.issues) - crit))
    console.print(files)
    if report.issues:
        issues = Table(title="Findings", title_justify="left")
        for col in ("severity", "file", "member", "rule", "finding"):
            issues.add_column(col, overflow="fold")
        for f, i in report.issues:
            issues.add_row(f"[{_STYLE[i.verdict]}]{i.severity}[/]", escape(f.path),
                           escape(i.member or "-"), i.rule_id,
                           escape(i.title + (f": {i.detail}" if i.detail else "")))
        console.print(issues)
    c = report.counts()
    console.print(f"[{_STYLE[report.verdict]}]{report.verdict}[/]: {c['files']} files, "
                  f"{c['critical']} critical, {c['needs_trust']} need trust ({report.seconds:.2f} s)")


def trust(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="MODEL@VER"),
    reason: str = typer.Option(..., "--reason", help="Why this version can be trusted."),
    revoke: bool = typer.Option(False, "--revoke", help="Withdraw an earlier trust decision."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Record an explicit trust decision for a model version (audited with the actor).

    The target loader refuses a model whose scan found critical or unknown content unless
    it is trusted this way.
    """
    with unit(ctx) as (settings, session):
        mv = resolve_model(session, ref)
        out = set_trust(session, mv, actor=settings.actor, reason=reason, revoke=revoke)
    if json_out:
        print_json(out)
    else:
        what = "no longer trusted" if revoke else "trusted"
        console.print(f"{out['model']} is {what} (scan status {out['scan_status']}, "
                      f"recorded for {out['actor']})")


def register(app: typer.Typer) -> None:
    app.command("scan")(scan)
    app.command("trust")(trust)
