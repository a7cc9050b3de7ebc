"""Plotly figures of the console, as JSON for the page (drawn by the locally served plotly.js).

Figures travel as data (``<script type="application/json">``), not as inline scripts, so the
pages keep a Content-Security-Policy without ``unsafe-inline`` scripts. Where the HTML report
already draws a chart (one model's heat map, its robustness curve) the console reuses
:mod:`riskloop.govern.reports.charts`.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any

import plotly.graph_objects as go

from ...govern.reports.charts import FONT, LEVEL_COLOURS, UNKNOWN_COLOUR
from ...govern.scoring import LEVELS, level_of
from .trends import Trend

SEVERITY_COLOURS = {"info": "#607d8b", "low": "#2e7d32", "medium": "#f9a825",
                    "high": "#ef6c00", "critical": "#c62828"}
STATE_COLOURS = {"identified": "#c62828", "contained": "#ef6c00", "recovering": "#f9a825",
                 "restored": "#2e7d32", "closed": "#607d8b"}


def as_json(fig: go.Figure | None) -> dict[str, Any] | None:
    """A figure as plain data (``None`` stays ``None``: the page says "no data")."""
    if fig is None:
        return None
    return json.loads(fig.to_json())


def _layout(fig: go.Figure, title: str, *, height: int = 300, **kw: Any) -> go.Figure:
    fig.update_layout(title={"text": title, "x": 0.01, "font": {"size": 14}}, font=FONT,
                      template="plotly_white", height=height,
                      margin={"l": 55, "r": 15, "t": 45, "b": 45}, **kw)
    return fig


def trend(t: Trend) -> go.Figure | None:
    if t.empty:
        return None
    fig = go.Figure()
    for s in t.series:
        fig.add_trace(go.Scatter(x=s.x, y=s.y, name=s.name, mode="lines+markers",
                                 line={"shape": "hv"} if s.step else {}))
    if t.limit is not None:
        fig.add_hline(y=t.limit, line_dash="dash", line_color="#555",
                      annotation_text=t.limit_label, annotation_position="top left")
    yaxis: dict[str, Any] = {"title": t.unit, "rangemode": "tozero"}
    if t.unit == "fraction":
        yaxis.update(tickformat=".0%", range=[0, 1.05])
    return _layout(fig, t.title, height=260, yaxis=yaxis, showlegend=len(t.series) > 1,
                   legend={"orientation": "h", "y": -0.25})


def portfolio_heat_map(rows: list[dict[str, Any]]) -> go.Figure | None:
    """5×5 likelihood × impact over every (model, threat) pair, with a row for the unknowns."""
    if not rows:
        return None
    cells: dict[tuple[int, int], list[str]] = {}
    for r in rows:
        for t in r["threats"]:
            if not t["applicable"]:
                continue
            lk = 6 if t["likelihood"] is None else int(t["likelihood"])
            cells.setdefault((lk, int(t["impact"])), []).append(f"{r['model']}: {t['threat_id']}")
    z, text, hover = [], [], []
    for lk in range(1, 7):
        zr, tr, hr = [], [], []
        for im in range(1, 6):
            names = cells.get((lk, im), [])
            zr.append(-1 if lk == 6 else LEVELS.index(level_of(lk, im)))
            tr.append(str(len(names)) if names else "")
            shown = names[:15] + ([f"... {len(names) - 15} more"] if len(names) > 15 else [])
            hr.append("<br>".join(shown) or "none")
        z.append(zr)
        text.append(tr)
        hover.append(hr)
    scale = [[0.0, UNKNOWN_COLOUR], [0.2, UNKNOWN_COLOUR], [0.2, LEVEL_COLOURS["low"]],
             [0.4, LEVEL_COLOURS["low"]], [0.4, LEVEL_COLOURS["medium"]],
             [0.6, LEVEL_COLOURS["medium"]], [0.6, LEVEL_COLOURS["high"]],
             [0.8, LEVEL_COLOURS["high"]], [0.8, LEVEL_COLOURS["critical"]],
             [1.0, LEVEL_COLOURS["critical"]]]
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"I{i}" for i in range(1, 6)], y=[f"L{i}" for i in range(1, 6)] + ["unknown"],
        text=text, customdata=hover, texttemplate="%{text}",
        textfont={"color": "white", "size": 14}, zmin=-1.5, zmax=3.5, colorscale=scale,
        showscale=False, xgap=3, ygap=3,
        hovertemplate="likelihood %{y}, impact %{x}<br>%{customdata}<extra></extra>"))
    return _layout(fig, f"Risk heat map across {len(rows)} model version(s): threats per cell",
                   height=420, xaxis={"title": "impact (risk profile)"},
                   yaxis={"title": "likelihood (evidence)"})


def alerts_timeline(alerts: list[dict[str, Any]], name: str) -> go.Figure | None:
    if not alerts:
        return None
    fig = go.Figure()
    for sev in ("info", "low", "medium", "high", "critical"):
        pts = [a for a in alerts if a["severity"] == sev and a["created_at"]]
        if pts:
            fig.add_trace(go.Scatter(
                x=[a["created_at"] for a in pts], y=[a["kind"] for a in pts], mode="markers",
                name=sev, marker={"size": 11, "color": SEVERITY_COLOURS[sev]},
                text=[f"alert #{a['id']} client {a['client'] or '-'}" for a in pts],
                hovertemplate="%{y} at %{x}<br>%{text}<extra></extra>"))
    return _layout(fig, f"Alerts of {name}", yaxis={"type": "category", "title": ""},
                   legend={"orientation": "h", "y": -0.3})


def drift_chart(points: list[dict[str, Any]], name: str, alert_psi: float,
                block_psi: float) -> go.Figure | None:
    pts = [p for p in points if p.get("at") and p.get("mean_psi") is not None]
    if not pts:
        return None
    pts.sort(key=lambda p: p["at"])
    fig = go.Figure(go.Scatter(x=[p["at"] for p in pts], y=[p["mean_psi"] for p in pts],
                               mode="lines+markers", name="mean PSI per window",
                               text=[p["source"] for p in pts],
                               hovertemplate="PSI %{y:.3f} at %{x}<br>%{text}<extra></extra>"))
    fig.add_hline(y=alert_psi, line_dash="dot", line_color="#f9a825",
                  annotation_text=f"alert {alert_psi:g}", annotation_position="top left")
    fig.add_hline(y=block_psi, line_dash="dash", line_color="#c62828",
                  annotation_text=f"block {block_psi:g}", annotation_position="top left")
    return _layout(fig, f"Input drift of {name}", yaxis={"title": "PSI", "rangemode": "tozero"},
                   showlegend=False)


def feature_psi(psi: dict[str, float], name: str, alert_psi: float) -> go.Figure | None:
    if not psi:
        return None
    top = sorted(psi.items(), key=lambda kv: -kv[1])[:20]
    fig = go.Figure(go.Bar(x=[k for k, _ in top], y=[v for _, v in top],
                           marker_color=["#c62828" if v >= alert_psi else "#1565c0" for _, v in top]))
    fig.add_hline(y=alert_psi, line_dash="dot", line_color="#555")
    return _layout(fig, f"Newest window of {name}: PSI of the 20 most shifted features",
                   yaxis={"title": "PSI"}, xaxis={"title": "feature", "type": "category"},
                   showlegend=False)


def traffic(times: list[datetime], reviewed: list[bool], name: str) -> go.Figure | None:
    if not times:
        return None
    span = (max(times) - min(times)).total_seconds()
    fmt = "%Y-%m-%dT%H:%M:00" if span < 2 * 86400 else "%Y-%m-%dT%H:00:00"
    total = Counter(t.strftime(fmt) for t in times)
    review = Counter(t.strftime(fmt) for t, r in zip(times, reviewed, strict=True) if r)
    keys = sorted(total)
    fig = go.Figure([go.Bar(x=keys, y=[total[k] for k in keys], name="predictions",
                            marker_color="#1565c0"),
                     go.Bar(x=keys, y=[review[k] for k in keys], name="sent to review",
                            marker_color="#f9a825")])
    per = "minute" if span < 2 * 86400 else "hour"
    return _layout(fig, f"Traffic of {name} per {per}", barmode="overlay",
                   yaxis={"title": "rows"}, legend={"orientation": "h", "y": -0.3})


def incident_timeline(d: dict[str, Any], signal_times: dict[int, str]) -> go.Figure | None:
    steps = [t for t in d["transitions"] if t["at"]]
    if not steps:
        return None
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=[t["at"] for t in steps], y=["playbook"] * len(steps), mode="lines+markers+text",
        text=[t["to"] for t in steps], textposition="top center", name="state",
        marker={"size": 14, "color": [STATE_COLOURS.get(t["to"], "#555") for t in steps]},
        customdata=[f"{t['action']} by {t['actor']}" for t in steps],
        hovertemplate="%{text} at %{x}<br>%{customdata}<extra></extra>"))
    sig = [(signal_times.get(s["alert"]), s) for s in d["signals"] if isinstance(s, dict)]
    sig = [(at, s) for at, s in sig if at]
    if sig:
        fig.add_trace(go.Scatter(
            x=[at for at, _ in sig], y=["signals"] * len(sig), mode="markers", name="alerts",
            marker={"size": 11, "symbol": "diamond",
                    "color": [SEVERITY_COLOURS.get(s["severity"], "#555") for _, s in sig]},
            text=[f"{s['kind']} (alert #{s['alert']})" for _, s in sig],
            hovertemplate="%{text} at %{x}<extra></extra>"))
    return _layout(fig, f"Timeline of incident {d['id']}", height=260,
                   yaxis={"type": "category", "title": ""}, showlegend=False)
