"""The self-contained HTML report: one file, plotly.js embedded, no request leaves the page."""

from __future__ import annotations

from typing import Any

import jinja2
from plotly.offline import get_plotlyjs

from .charts import render_all

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("riskloop.govern.reports", "templates"),
    autoescape=jinja2.select_autoescape(["html"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_html(data: dict[str, Any]) -> str:
    """Render the report data as one offline HTML page (plotly's bundle inlined once)."""
    chart_list = render_all(data)
    charts = {c["key"]: c["html"] or '<p class="nodata">Not measured.</p>' for c in chart_list}
    return _ENV.get_template("report.html").render(
        d=data, charts=charts, chart_list=chart_list, plotlyjs=get_plotlyjs())
