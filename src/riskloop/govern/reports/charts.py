"""Plotly figures of a report: risk heat map, robustness curve, membership ROC, fairness bars,
extraction fidelity. Each returns ``None`` when there is nothing measured to draw, so a report
shows "not measured" instead of an empty chart.
"""

from __future__ import annotations

from typing import Any

import plotly.graph_objects as go

LEVEL_COLOURS = {"low": "#2e7d32", "medium": "#f9a825", "high": "#ef6c00", "critical": "#c62828"}
UNKNOWN_COLOUR = "#9e9e9e"
FONT = {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12}
CONFIG = {"displaylogo": False, "responsive": True,
          "modeBarButtonsToRemove": ["sendDataToCloud", "select2d", "lasso2d"]}


def _layout(fig: go.Figure, title: str, **kw: Any) -> go.Figure:
    kw.setdefault("height", 380)
    fig.update_layout(title={"text": title, "x": 0.01}, font=FONT,
                      margin={"l": 60, "r": 20, "t": 50, "b": 50}, paper_bgcolor="white",
                      plot_bgcolor="#fafafa", **kw)
    return fig


def heat_map(data: dict[str, Any]) -> go.Figure:
    """5×5 likelihood × impact matrix with each threat in its cell; unknown threats in a grey
    row of their own (a gap, not a low risk)."""
    order = ["low", "medium", "high", "critical"]
    matrix = data["matrix"]
    z = [[order.index(matrix[lk][im]) for im in range(5)] for lk in range(5)]
    z.append([-1] * 5)
    labels: list[list[list[str]]] = [[[] for _ in range(5)] for _ in range(6)]
    for t in data["risk"]["threats"]:
        if not t["applicable"]:
            continue
        row = 5 if t["likelihood"] is None else t["likelihood"] - 1
        labels[row][t["impact"] - 1].append(t["threat_id"])
    text = [["<br>".join(cell) for cell in row] for row in labels]
    scale = [[0.0, UNKNOWN_COLOUR], [0.2, UNKNOWN_COLOUR], [0.2, LEVEL_COLOURS["low"]],
             [0.4, LEVEL_COLOURS["low"]], [0.4, LEVEL_COLOURS["medium"]],
             [0.6, LEVEL_COLOURS["medium"]], [0.6, LEVEL_COLOURS["high"]],
             [0.8, LEVEL_COLOURS["high"]], [0.8, LEVEL_COLOURS["critical"]],
             [1.0, LEVEL_COLOURS["critical"]]]
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"I{i}" for i in range(1, 6)],
        y=[f"L{i}" for i in range(1, 6)] + ["unknown"], text=text,
        texttemplate="%{text}", textfont={"color": "white", "size": 11}, zmin=-1.5, zmax=3.5,
        colorscale=scale, showscale=False, xgap=3, ygap=3,
        hovertemplate="likelihood %{y}, impact %{x}<br>%{text}<extra></extra>"))
    return _layout(fig, f"Risk heat map (score {data['risk']['score']}/100)",
                   xaxis={"title": "impact (from the risk profile)"},
                   yaxis={"title": "likelihood (from evidence)"}, height=460)


def robustness(data: dict[str, Any]) -> go.Figure | None:
    rob = data["charts"].get("robustness")
    if not rob:
        return None
    pts = sorted((p for p in rob["curve"] if p.get("eps") is not None
                  and p.get("robust_accuracy") is not None), key=lambda p: p["eps"])
    fig = go.Figure()
    if pts:
        fig.add_trace(go.Scatter(x=[p["eps"] for p in pts], y=[p["robust_accuracy"] for p in pts],
                                 mode="lines+markers", name=f"robust accuracy (run #{rob['run_id']})"))
        proved = [p for p in pts if p.get("verified_accuracy") is not None]
        if proved:
            fig.add_trace(go.Scatter(x=[p["eps"] for p in proved], y=[p["verified_accuracy"] for p in proved],
                                     mode="lines+markers", line={"dash": "dot"},
                                     name="proved robust (lower bound)"))
    if rob.get("ars") is not None:
        fig.add_trace(go.Scatter(x=[rob.get("at") or 0], y=[rob["ars"]], mode="markers",
                                 marker={"size": 12, "symbol": "diamond", "color": "#c62828"},
                                 name=f"ARS {rob['ars']:.3f}"))
    if not fig.data:
        return None
    fig.add_hline(y=data["policy"]["min_ars"], line_dash="dash", line_color="#555",
                  annotation_text=f"policy min ARS {data['policy']['min_ars']:g}")
    return _layout(fig, "Robustness curve", xaxis={"title": "epsilon (L∞, input units)"},
                   yaxis={"title": "robust accuracy", "range": [0, 1.05]})


def roc(data: dict[str, Any]) -> go.Figure | None:
    r = data["charts"].get("roc")
    if not r or not r["fpr"] or len(r["fpr"]) != len(r["tpr"]):
        return None
    pos = [(x, y) for x, y in zip(r["fpr"], r["tpr"], strict=True) if x > 0]
    if not pos:
        return None
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[p[0] for p in pos], y=[p[1] for p in pos], mode="lines",
                             name=f"attack (AUC {r['auc']:.3f})" if r.get("auc") is not None else "attack"))
    fig.add_trace(go.Scatter(x=[pos[0][0], 1], y=[pos[0][0], 1], mode="lines", name="chance",
                             line={"dash": "dot", "color": "#777"}))
    if r.get("tpr_at_1pct_fpr") is not None:
        fig.add_trace(go.Scatter(x=[0.01], y=[r["tpr_at_1pct_fpr"]], mode="markers",
                                 marker={"size": 11, "color": "#c62828"},
                                 name=f"TPR {r['tpr_at_1pct_fpr']:.3f} at 1% FPR"))
    return _layout(fig, f"Membership inference ROC (run #{r['run_id']})",
                   xaxis={"title": "false-positive rate (log)", "type": "log"},
                   yaxis={"title": "true-positive rate", "range": [0, 1.02]})


def fairness(data: dict[str, Any]) -> go.Figure | None:
    fr = data["charts"].get("fairness")
    if not fr:
        return None
    fig = go.Figure()
    groups = fr["groups"]
    if groups:
        keys = [k for k in groups[0] if k != "group"]
        for k in keys[:4]:
            fig.add_trace(go.Bar(x=[g["group"] for g in groups], y=[g.get(k) for g in groups], name=k))
        title, xt = "Per-group results", "group"
    elif fr["gaps"]:
        names = list(fr["gaps"])
        fig.add_trace(go.Bar(x=names, y=[fr["gaps"][n] for n in names], name="gap",
                             marker_color="#ef6c00"))
        fig.add_hline(y=data["policy"]["max_dp"], line_dash="dash", line_color="#555",
                      annotation_text=f"policy limit {data['policy']['max_dp']:g}")
        title, xt = "Between-group gaps", "metric"
    else:
        return None
    return _layout(fig, f"{title} (run #{fr['run_id']})", barmode="group",
                   xaxis={"title": xt}, yaxis={"title": "value"})


def extraction(data: dict[str, Any]) -> go.Figure | None:
    ex = data["charts"].get("extraction")
    if not ex:
        return None
    pts = sorted((p for p in ex["curve"] if p.get("budget") is not None
                  and p.get("fidelity") is not None), key=lambda p: p["budget"])
    if not pts:
        return None
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[p["budget"] for p in pts], y=[p["fidelity"] for p in pts],
                             mode="lines+markers", name="surrogate fidelity"))
    if any(p.get("accuracy") is not None for p in pts):
        fig.add_trace(go.Scatter(x=[p["budget"] for p in pts], y=[p.get("accuracy") for p in pts],
                                 mode="lines+markers", name="surrogate accuracy"))
    fig.add_hline(y=data["policy"]["max_fidelity"], line_dash="dash", line_color="#555",
                  annotation_text=f"policy max fidelity {data['policy']['max_fidelity']:g}")
    return _layout(fig, f"Model extraction (run #{ex['run_id']})",
                   xaxis={"title": "queries", "type": "log"}, yaxis={"title": "agreement", "range": [0, 1.05]})


CHARTS = (("heatmap", "Risk heat map", heat_map), ("robustness", "Robustness curve", robustness),
          ("roc", "Membership inference ROC", roc), ("fairness", "Fairness by group", fairness),
          ("extraction", "Model extraction", extraction))


def render_all(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Each chart as an HTML fragment (plotly.js itself is embedded once by the page)."""
    out = []
    for key, title, fn in CHARTS:
        fig = fn(data)
        html = None if fig is None else fig.to_html(
            full_html=False, include_plotlyjs=False, config=CONFIG, div_id=f"chart-{key}")
        out.append({"key": key, "title": title, "html": html})
    return out
