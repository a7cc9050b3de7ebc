"""MANAGE (organisational) commands: policy, risk, gate, approve, promote, compliance, report, kpi."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ..errors import InputError
from ..govern import approvals, compliance, evidence, kpi, scoring
from ..govern import policy as policy_mod
from ..govern.gate_formats import to_json, to_junit, to_sarif
from ..govern.gates import GateEvaluation
from ..govern.reports import FORMATS, write_annex_iv, write_report
from ..inventory.refs import resolve_model
from .common import JSON_OPTION, console, print_json, settings_from, short, unit

policy_app = typer.Typer(help="The risk-appetite policy as code (YAML).", no_args_is_help=True)

POLICY_OPTION = typer.Option(
    None, "--policy", "-p", envvar="RISKLOOP_POLICY",
    help="Policy YAML (default: riskloop-policy.yaml in the workspace, else the built-in default).",
)
STYLE = {"pass": "green", "approved": "green", "GO": "bold green", "fail": "red", "missing": "red",
         "NO-GO": "bold red", "pending": "yellow", "accepted": "yellow", "NEEDS-APPROVAL": "bold yellow",
         "skipped": "dim", "low": "green", "medium": "yellow", "high": "dark_orange",
         "critical": "bold red", "unknown": "magenta", "n/a": "dim", "evidenced": "green",
         "partial": "yellow", "human": "cyan", "ok": "green", "breach": "red", "no data": "magenta"}


def _c(text: Any) -> str:
    s = "-" if text is None else str(text)
    style = STYLE.get(s)
    return f"[{style}]{s}[/]" if style else s


def _load(ctx: typer.Context, path: Path | None) -> policy_mod.Policy:
    return policy_mod.load(path, workspace=settings_from(ctx).workspace)


@policy_app.command("init")
def policy_init(
    ctx: typer.Context,
    path: Path = typer.Argument(None, help="Where to write it (default: riskloop-policy.yaml in the workspace)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write the default policy, with a comment on every threshold, for you to edit."""
    target = path or settings_from(ctx).workspace / policy_mod.POLICY_FILE
    policy_mod.write_default(target, force=force)
    console.print(f"wrote {target}: edit it, then check it with 'riskloop policy validate {target}'")


@policy_app.command("show")
def policy_show(
    ctx: typer.Context,
    policy: Path = POLICY_OPTION,
    model: str = typer.Option(None, "--model", "-m", help="Show it as it applies to MODEL@VER (tier and domain overrides)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Print the effective policy (defaults merged), optionally resolved for one model."""
    pol = _load(ctx, policy)
    data: dict[str, Any] = pol.data
    applied: tuple[str, ...] = ()
    if model:
        with unit(ctx) as (_s, session):
            mv = resolve_model(session, model)
            res = pol.resolve(tier=mv.tier, domain=mv.domain)
        data, applied = res.data, res.applied
    if json_out:
        print_json({"source": pol.source, "digest": pol.digest, "applied_overrides": list(applied),
                    "policy": data})
        return
    head = f"# source: {pol.source}\n# digest: {pol.digest}\n"
    if model:
        head += f"# as applied to {model}: {', '.join(applied) or 'no overrides'}\n"
    typer.echo(head + policy_mod.dump(data), nl=False)


@policy_app.command("validate")
def policy_validate(
    ctx: typer.Context,
    path: Path = typer.Argument(None, help="Policy YAML (default: the workspace's riskloop-policy.yaml)."),
    json_out: bool = JSON_OPTION,
) -> None:
    """Check a policy file; errors name the file, line and key (exit 2)."""
    if path is None:
        path = settings_from(ctx).workspace / policy_mod.POLICY_FILE
    pol = policy_mod.load(path)
    if json_out:
        print_json({"ok": True, "source": pol.source, "name": pol.name, "digest": pol.digest})
    else:
        console.print(f"[green]OK[/] {pol.source}: policy '{pol.name}' is valid (digest {short(pol.digest)})")


def risk(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="MODEL@VER"),
    policy: Path = POLICY_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Score every threat: likelihood from evidence × impact from the risk profile (5×5)."""
    pol = _load(ctx, policy)
    with unit(ctx) as (_s, session):
        mv = resolve_model(session, ref)
        res = pol.resolve(tier=mv.tier, domain=mv.domain)
        ra = scoring.assess(evidence.collect(session, mv, max_age_days=int(res.get("evidence.max_age_days"))), res)
        residual = None
        if mv.derived_from is not None:
            parent = mv.derived_from
            pres = pol.resolve(tier=parent.tier, domain=parent.domain)
            before = scoring.assess(evidence.collect(
                session, parent, max_age_days=int(pres.get("evidence.max_age_days"))), pres)
            residual = {"parent": parent.ref, "method": (mv.derivation or {}).get("method"),
                        "score_before": before.score, "score_after": ra.score,
                        "rows": scoring.compare(before, ra)}
    out = {**ra.as_dict(), "residual": residual}
    if json_out:
        print_json(out)
        return
    t = Table(title=f"Risk of {ra.model}: score {ra.score}/100, {ra.assessed}/{ra.applicable} threats assessed",
              title_justify="left")
    for col in ("threat", "layer", "L", "I", "level", "basis"):
        t.add_column(col)
    for th in ra.threats:
        t.add_row(th.threat_id, th.layer, str(th.likelihood or "?"), str(th.impact), _c(th.level),
                  th.basis + (f" (run #{th.run_id})" if th.run_id else ""))
    console.print(t)
    if ra.gaps:
        console.print(f"[magenta]gaps[/] (never assessed, counted at likelihood 5): {', '.join(ra.gaps)}")
    if residual:
        console.print(f"residual risk after {residual['method'] or 'mitigation'}: "
                      f"{residual['parent']} {residual['score_before']} → {ra.model} {ra.score}")
        for row in residual["rows"]:
            if row["change"] not in ("same", "n/a", "unknown"):
                console.print(f"  {row['threat_id']}: {row['before']} → {row['after']} ({row['change']})")


def _gate_table(result: GateEvaluation) -> None:
    t = Table(title=f"Gate {result.model} (policy {result.policy_name}"
              f"{', ' + ', '.join(result.applied) if result.applied else ''})", title_justify="left")
    for col in ("rule", "status", "value", "threshold", "evidence", "detail"):
        t.add_column(col)
    for r in result.rules:
        t.add_row(r.id, _c(r.status), "-" if r.value is None else str(r.value), r.threshold,
                  f"run #{r.run_id}" if r.run_id else "-", r.detail)
    console.print(t)
    for note in result.notes:
        console.print(f"[dim]{note}[/]")
    console.print(f"{_c(result.decision)}  risk score {result.risk.score}/100, "
                  f"{result.risk.assessed}/{result.risk.applicable} threats assessed")


def gate(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="MODEL@VER"),
    policy: Path = POLICY_OPTION,
    fmt: str = typer.Option("table", "--format", "-f", help="table, json, junit or sarif."),
    output: Path = typer.Option(None, "--output", "-o", help="Also write the json/junit/sarif output to this file."),
) -> None:
    """Decide GO (exit 0), NO-GO (exit 1) or NEEDS-APPROVAL (exit 3) for a model version."""
    if fmt not in ("table", "json", "junit", "sarif"):
        raise InputError(f"unknown --format '{fmt}': choose table, json, junit or sarif")
    pol = _load(ctx, policy)
    with unit(ctx) as (settings, session):
        mv = resolve_model(session, ref)
        result = approvals.evaluate(session, mv, pol)
        decision = approvals.record(session, actor=settings.actor, mv=mv, policy=pol, result=result)
        decision_id = decision.id
    if fmt == "table":
        _gate_table(result)
        text = to_json(result)
    elif fmt == "json":
        text = json.dumps({**result.as_dict(), "decision_id": decision_id}, indent=2, sort_keys=True,
                          default=str) + "\n"
    elif fmt == "junit":
        text = to_junit(result)
    else:
        text = json.dumps(to_sarif(result), indent=2) + "\n"
    if fmt != "table":
        typer.echo(text, nl=False)
    if output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise InputError(f"cannot write '{output}' ({exc.strerror}): choose a writable path") from None
    raise typer.Exit(result.exit_code)


def approve(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="MODEL@VER"),
    reason: str = typer.Option(..., "--reason", "-r", help="What was reviewed and why it is acceptable."),
    accept_risk: bool = typer.Option(False, "--accept-risk", help="Accept the failed or missing rules (if the policy allows)."),
    revoke: int = typer.Option(None, "--revoke", metavar="ID", help="Withdraw approval ID of this model "
                               "instead (it stays on record and no longer counts)."),
    policy: Path = POLICY_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Record a human sign-off for a model version (required for high-risk tiers), or
    withdraw one with --revoke ID."""
    pol = _load(ctx, policy)
    if revoke is not None:
        if accept_risk:
            raise InputError("--revoke withdraws an approval: drop --accept-risk")
        with unit(ctx) as (settings, session):
            mv = resolve_model(session, ref)
            appr, after = approvals.revoke(session, actor=settings.actor, mv=mv, approval_id=revoke,
                                           reason=reason, policy=pol)
            out = {"approval_id": appr.id, "model": mv.ref, "revoked_by": appr.revoked_by,
                   "gate_now": after.decision, "stage": mv.stage}
        if json_out:
            print_json(out)
        else:
            console.print(f"revoked approval #{out['approval_id']} of {out['model']}; gate now "
                          f"{_c(out['gate_now'])}"
                          + (" (the model is in production: demote it with 'riskloop promote "
                             f"{out['model']} --to staging' if it must not serve)"
                             if out["stage"] == "production" and out["gate_now"] != "GO" else ""))
        return
    with unit(ctx) as (settings, session):
        mv = resolve_model(session, ref)
        appr, after = approvals.approve(session, actor=settings.actor, mv=mv, policy=pol,
                                        reason=reason, accept_risk=accept_risk)
        out = {"approval_id": appr.id, "model": mv.ref, "kind": appr.kind, "by": appr.approved_by,
               "accepted_rules": appr.accepted_rules, "gate_now": after.decision}
    if json_out:
        print_json(out)
    else:
        console.print(f"recorded {out['kind']} #{out['approval_id']} for {out['model']} by {out['by']}; "
                      f"gate now {_c(out['gate_now'])}")


def promote(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="MODEL@VER"),
    to: str = typer.Option(..., "--to", help=f"Stage: {', '.join(s for s in approvals.STAGES if s != 'superseded')}."),
    reason: str = typer.Option("", "--reason", help="Why (recorded with the stage change)."),
    policy: Path = POLICY_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Move a model version to a stage; production needs a GO gate (sign-off included)."""
    pol = _load(ctx, policy)
    with unit(ctx) as (settings, session):
        mv = resolve_model(session, ref)
        outcome = approvals.promote(session, actor=settings.actor, mv=mv, policy=pol, to=to, reason=reason)
    outcome.check()
    out = {"model": outcome.model, "stage": outcome.to, "change_id": outcome.change_id,
           "gate": outcome.gate.decision if outcome.gate else None}
    if json_out:
        print_json(out)
    else:
        console.print(f"{out['model']} is now in stage [bold]{out['stage']}[/]"
                      + (f" (gate {_c(out['gate'])})" if out["gate"] else ""))


def compliance_cmd(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="MODEL@VER"),
    policy: Path = POLICY_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Which NIST AI RMF, EU AI Act and ISO/IEC 42001 items have evidence, and which are missing."""
    pol = _load(ctx, policy)
    with unit(ctx) as (_s, session):
        out = compliance.report(session, resolve_model(session, ref), pol)
    if json_out:
        print_json(out)
        return
    t = Table(title=f"Compliance evidence of {out['model']} (gate {out['gate']})", title_justify="left")
    for col in ("framework", "item", "status", "evidence"):
        t.add_column(col)
    for i in out["items"]:
        t.add_row(i["framework"], f"{i['id']} {i['title']}", _c(i["status"]), i["evidence"])
    console.print(t)
    for fw, counts in out["summary"].items():
        console.print(f"{fw}: " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    console.print(f"red-team passed: {out['red_team_passed']}, privacy audit passed: {out['privacy_audit_passed']}")


def report(
    ctx: typer.Context,
    ref: str = typer.Argument(..., help="MODEL@VER"),
    output: Path = typer.Option(..., "--output", "-o", help="Report file (a folder with --annex-iv)."),
    fmt: str = typer.Option("html", "--format", "-f", help="html (offline, one file), md or json."),
    annex_iv: bool = typer.Option(False, "--annex-iv", help="Draft EU AI Act Annex IV documentation into the folder."),
    policy: Path = POLICY_OPTION,
    json_out: bool = JSON_OPTION,
) -> None:
    """Write a risk report (HTML with charts, Markdown or JSON) or an Annex IV draft."""
    if fmt not in FORMATS:
        raise InputError(f"unknown --format '{fmt}': choose one of {', '.join(FORMATS)}")
    pol = _load(ctx, policy)
    with unit(ctx) as (settings, session):
        mv = resolve_model(session, ref)
        if annex_iv:
            out = write_annex_iv(session, actor=settings.actor, mv=mv, policy=pol, out_dir=output)
        else:
            out = write_report(session, actor=settings.actor, mv=mv, policy=pol, out=output, fmt=fmt)
    if json_out:
        print_json(out)
    elif annex_iv:
        console.print(f"wrote Annex IV draft for {out['model']} to {out['path']}/ "
                      f"({out['to_write']} passages marked for the provider to write)")
    else:
        console.print(f"wrote {out['format']} report for {out['model']} to {out['path']} "
                      f"({out['bytes']:,} bytes, gate {_c(out['decision'])}, risk {out['risk_score']}/100)")


def kpi_cmd(ctx: typer.Context, policy: Path = POLICY_OPTION, json_out: bool = JSON_OPTION) -> None:
    """Paper Table 4 indicators from the store ("no data" where nothing was measured)."""
    pol = _load(ctx, policy)
    with unit(ctx) as (_s, session):
        values = kpi.as_dicts(kpi.compute(session, pol))
    if json_out:
        print_json(values)
        return
    t = Table(title="Key indicators (paper Table 4)", title_justify="left")
    for col in ("category", "indicator", "value", "target", "status"):
        t.add_column(col)
    for v in values:
        value = "no data" if v["value"] is None else f"{v['value']:.3f}" + (
            f" {v['unit']}" if v["unit"] not in ("fraction",) else "")
        t.add_row(v["category"], v["name"], value, v["threshold"], _c(v["status"]))
    console.print(t)
    ars = next((v for v in values if v["key"] == "ars"), None)
    if ars and ars["detail"]:
        d = Table(title="Adversarial Robustness Score per model", title_justify="left")
        for col in ("model", "stage", "ARS", "min", "status", "evidence"):
            d.add_column(col)
        for r in ars["detail"]:
            d.add_row(r["model"], r["stage"], "no data" if r["ars"] is None else f"{r['ars']:.3f}",
                      f"{r['min_ars']:g}", _c(r["status"]),
                      f"run #{r['run_id']}" if r["run_id"] else r["note"])
        console.print(d)


def register(app: typer.Typer) -> None:
    app.add_typer(policy_app, name="policy")
    app.command("risk")(risk)
    app.command("gate")(gate)
    app.command("approve")(approve)
    app.command("promote")(promote)
    app.command("compliance")(compliance_cmd)
    app.command("report")(report)
    app.command("kpi")(kpi_cmd)
