"""MONITOR commands: ``riskloop drift``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..errors import InputError, IntegrityError
from ..inventory.digest import manifest_of
from ..inventory.refs import resolve_dataset
from ..monitor.drift import BINNINGS, STATS, DataDrift
from ..monitor.profile import ReferenceProfile
from ..monitor.tables import read_table
from .common import JSON_OPTION, console, print_json, short, unit


def _fmt(value: float | None, p_value: bool = False) -> str:
    if value is None:
        return "-"
    if p_value:
        return f"{value:.2e}" if value < 1e-3 else f"{value:.3f}"
    return f"{value:.4f}"


def drift(
    ctx: typer.Context,
    reference: str = typer.Argument(..., help="Registered reference dataset, DATASET@VER."),
    current: Path = typer.Argument(..., help="Current data: a CSV, Parquet or NPZ file."),
    binning: str = typer.Option(
        "quantile", "--binning",
        help="quantile: frozen reference-quantile bins; evidently: Evidently's conventions.",
    ),
    stat: str = typer.Option("psi", "--stat", help=f"Statistic that decides drift: {', '.join(STATS)}."),
    threshold: float = typer.Option(
        None, "--threshold", help="Drift threshold for --stat (default: psi/kl/js/wasserstein 0.1, "
        "ks/chi2 p < 0.05)."),
    bins: int = typer.Option(10, "--bins", help="Reference-quantile bins per numeric column."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Score a data file against a registered reference dataset, column by column."""
    if binning not in BINNINGS:
        raise InputError(f"unknown --binning '{binning}': use one of {', '.join(BINNINGS)}")
    detector = DataDrift(binning=binning, stat=stat, threshold=threshold)
    with unit(ctx) as (_settings, session):
        ds = resolve_dataset(session, reference)
        ref_name, ref_path, ref_digest = ds.ref, Path(ds.path), ds.digest
        ref_format, target = ds.format, ds.target
    if ref_format.startswith("folder"):
        raise InputError(
            f"reference dataset {ref_name} is a folder ({ref_format}): drift needs a dataset "
            "registered as one CSV, Parquet or NPZ file"
        )
    found = manifest_of(ref_path).root
    if found != ref_digest:
        raise IntegrityError(
            f"reference dataset {ref_name} at '{ref_path}' changed since it was registered "
            f"(digest {short(found)} != {short(ref_digest)}): restore the file or register a "
            "new version"
        )
    ref_frame = read_table(ref_path)
    cur_frame = read_table(current)
    exclude = [target] if target and target not in cur_frame.columns else []
    categorical = [target] if target and target in ref_frame.columns and not exclude else []
    profile = ReferenceProfile.fit(
        ref_frame, categorical=categorical, exclude=exclude, n_bins=bins,
        sample_size=None if binning == "evidently" else 10_000,
        source={"dataset": ref_name, "digest": ref_digest},
    )
    report = detector.run(profile, cur_frame)
    out: dict[str, Any] = {"reference": ref_name, "current": str(current), **report.as_dict()}
    if exclude:
        out["warnings"].append(f"label column '{target}' is not in the current data: not scored")
    if json_out:
        print_json(out)
        return
    table = Table(title=f"drift of {current.name} against {ref_name} ({binning} bins)",
                  title_justify="left")
    for col in ("feature", "kind", "PSI", "KL", "JS", "KS p", "Wasserstein", "drifted"):
        table.add_column(col, justify="left" if col in ("feature", "kind") else "right")
    for f in report.features:
        table.add_row(
            f.name, f.kind, _fmt(f.psi), _fmt(f.kl), _fmt(f.js), _fmt(f.ks_p, p_value=True),
            _fmt(f.wasserstein), "[bold red]yes[/]" if f.drifted else "no",
        )
    console.print(table)
    for w in out["warnings"]:
        console.print(f"[yellow]warning:[/] {w}")
    verdict = "[bold red]drift[/]" if report.dataset_drift else "no dataset drift"
    console.print(
        f"{verdict}: {len(report.drifted)} of {len(report.features)} features drifted by "
        f"{report.stat} (share {report.share_drifted:.2f}, dataset drift at >= "
        f"{report.drift_share:.2f}); {report.rows} current rows"
    )


def register(app: typer.Typer) -> None:
    app.command("drift")(drift)
