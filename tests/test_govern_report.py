"""Reports: the offline HTML file, Markdown, JSON and the Annex IV draft, from a real store."""

from __future__ import annotations

import hashlib
import json
import re

from plotly.offline import get_plotlyjs
from sqlalchemy import select

from riskloop.govern.reports.annex_iv import TODO
from riskloop.store.db import transaction
from riskloop.store.models import AuditEvent
from tests.test_govern_support import XSS, rich_model


def _setup(ws):
    with transaction(ws.settings) as s:
        return rich_model(s, ws.path.parent).ref


def test_html_report_is_one_offline_file(ready_sqlite, tmp_path):
    ws = ready_sqlite
    ref = _setup(ws)
    out = tmp_path / "r" / "report.html"
    res = ws.invoke("report", ref, "-o", str(out), "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    html = out.read_text()
    assert info["sha256"] == hashlib.sha256(html.encode()).hexdigest()
    bundle = get_plotlyjs()
    assert bundle in html and html.count(bundle) == 1  # plotly.js inlined once, no CDN
    page = html.replace(bundle, "")  # (the bundle's own strings mention map-tile servers)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "cdn.plot.ly" not in page and "<script src" not in page
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    assert XSS not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    for key in ("chart-heatmap", "chart-robustness", "chart-roc", "chart-fairness", "chart-extraction"):
        assert f'id="{key}"' in html
    assert "Residual risk after adversarial-training" in html
    with transaction(ws.settings) as s:
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "report.write")).scalar_one()
        assert ev.payload["sha256"] == info["sha256"] and ev.payload["format"] == "html"


def test_markdown_and_json_reports_agree_with_the_gate(ready_sqlite, tmp_path):
    ws = ready_sqlite
    ref = _setup(ws)
    gate = json.loads(ws.invoke("gate", ref, "--format", "json").stdout)
    assert ws.invoke("report", ref, "-o", str(tmp_path / "r.md"), "-f", "md").exit_code == 0
    assert ws.invoke("report", ref, "-o", str(tmp_path / "r.json"), "-f", "json").exit_code == 0
    md = (tmp_path / "r.md").read_text()
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["gate"]["decision"] == gate["decision"] == "NO-GO"  # needs-trust, fairness gap
    assert f"## Gate decision: **{gate['decision']}**" in md
    assert "| `supply-chain.verdict` | fail | needs-trust |" in md
    assert "| `fairness.demographic-parity` | fail | 0.12 |" in md
    assert f"## Risk: {data['risk']['score']}/100" in md
    assert "- model clf@2" in md and "trained on dataset train@1" in md
    assert data["residual"]["parent"] == "clf@1" and data["residual"]["score_after"] <= data["residual"]["score_before"]
    rows = {r["threat_id"]: r for r in data["residual"]["rows"]}
    assert rows["evasion"]["change"] == "lower"
    assert data["charts"]["roc"]["auc"] == 0.53 and data["charts"]["fairness"]["groups"][0]["group"] == "f"


def test_annex_iv_draft_marks_what_a_human_must_write(ready_sqlite, tmp_path):
    ws = ready_sqlite
    ref = _setup(ws)
    res = ws.invoke("report", ref, "--annex-iv", "-o", str(tmp_path / "annex"), "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    text = (tmp_path / "annex" / "annex-iv.md").read_text()
    assert info["to_write"] == text.count(TODO) >= 8
    for n in range(1, 10):
        assert f"\n## {n}. " in text
    assert "trained on train@1" in text and "adversarial examples or model evasion" in text
    assert json.loads((tmp_path / "annex" / "evidence.json").read_text())["model"]["ref"] == ref


def test_report_errors_are_one_line(ready_sqlite, tmp_path):
    ws = ready_sqlite
    ref = _setup(ws)
    bad = ws.invoke("report", ref, "-o", str(tmp_path / "x.pdf"), "-f", "pdf")
    assert bad.exit_code == 2 and "unknown --format 'pdf'" in bad.stderr
    folder = ws.invoke("report", ref, "-o", str(tmp_path))
    assert folder.exit_code == 2 and "is a folder" in folder.stderr
    (tmp_path / "file").write_text("x")
    annex = ws.invoke("report", ref, "--annex-iv", "-o", str(tmp_path / "file"))
    assert annex.exit_code == 2 and "is a file" in annex.stderr
    with transaction(ws.settings) as s:
        assert s.execute(select(AuditEvent).where(AuditEvent.action == "report.write")).first() is None
