"""The risk console in headless Chromium (Debian's, driven by Playwright) against a real server
on a loopback port: sign in, read the indicators, approve a model as a risk officer, download
its report, contain an incident, decide a review item; and a viewer who is offered none of it.
Every page must draw its charts with the local plotly.js, log no console error and ask no
host but the server. Screenshots go to ``test-artifacts/dashboard/``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from riskloop.govern import kpi
from riskloop.govern import policy as policy_mod
from riskloop.service.dashboard.web import kpi_value
from riskloop.store import db
from riskloop.store.db import transaction
from riskloop.store.models import Approval, AuditEvent, Deployment, Incident, ReviewItem
from tests.test_dashboard_support import DEPLOYMENT, ConsoleWorld, live_server, seeded

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "dashboard"
DRAWN = ("e => e.querySelectorAll('.heatmaplayer image, .scatterlayer .trace path, "
         ".barlayer .point path').length")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian chromium not installed (/usr/bin/chromium)"),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleWorld]:
    with pytest.MonkeyPatch.context() as mp:
        for var in ("RISKLOOP_DB_URL", "RISKLOOP_POLICY"):
            mp.delenv(var, raising=False)
        mp.setenv("RISKLOOP_ACTOR", "tester")
        root = tmp_path_factory.mktemp("console-browser") / "ws"
        yield seeded(root, tmp_path_factory.getbasetemp() / "console-models")
    db.dispose_engines()


@pytest.fixture(scope="module")
def base(world: ConsoleWorld) -> Iterator[str]:
    with live_server(world.settings) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


class Watched:
    """A page that records console problems and every host it asks."""

    def __init__(self, browser: Any, base: str) -> None:
        self.context = browser.new_context(viewport={"width": 1300, "height": 900},
                                           accept_downloads=True)
        self.page = self.context.new_page()
        self.base = base
        self.problems: list[str] = []
        self.hosts: set[str] = set()
        self.page.on("console", lambda m: self.problems.append(f"console {m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"request failed: {r.url}"))
        self.page.on("request", lambda r: self.hosts.add(urlsplit(r.url).netloc))

    def sign_in(self, token: str) -> None:
        self.page.goto(self.base + "/")
        assert urlsplit(self.page.url).path == "/signin"
        self.page.fill("#token", token)
        self.page.click("#signin-submit")
        self.page.wait_for_url(self.base + "/")

    def charts_drawn(self) -> int:
        """Wait until plotly drew every chart of the page; check each has traces inside."""
        n = self.page.locator("[data-figure]").count()
        self.page.wait_for_function(
            f"document.querySelectorAll('[data-drawn]').length >= {n}", timeout=30_000)
        for div in self.page.locator("[data-figure]").all():
            assert div.evaluate(DRAWN) > 0, div.get_attribute("id")
        return n

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def close(self) -> None:
        self.context.close()


def test_risk_officer_signs_off_contains_and_decides(world, base, browser):
    w = Watched(browser, base)
    page = w.page
    w.sign_in(world.tokens["risk-officer"])
    assert page.text_content("#who").strip().startswith("rita · risk-officer")

    # Executive view: the five indicators of Table 4, as the library computes them.
    with transaction(world.settings) as s:
        values = kpi.compute(s, policy_mod.load(workspace=world.path))
    assert page.locator("#kpis .kpi").count() == len(values) >= 5
    for v in values:
        tile = page.locator(f"#kpi-{v.key}")
        assert tile.locator(".value").text_content().strip() == kpi_value(v.value, v.unit)
        assert tile.get_attribute("data-status") == v.status
    assert w.charts_drawn() >= 5  # trends with records, and the portfolio heat map
    w.shot("1-overview")

    # A model page: robustness curve and heat map drawn, the sign-off offered.
    page.click('#models a:text-is("scorer@1")')
    page.wait_for_url(base + "/models/scorer@1")
    assert page.text_content("#decision").strip() == "NEEDS-APPROVAL"
    assert w.charts_drawn() == 2
    w.shot("2-model-before-approval")
    page.fill("#reason", "FGSM robustness curve above the policy minimum; intended use reviewed")
    page.click("#approve-submit")
    page.wait_for_selector("#flash")
    assert "recorded sign-off" in page.text_content("#flash")
    assert page.text_content("#decision").strip() == "GO"
    assert page.locator("#approve-form").count() == 0
    w.shot("3-model-approved")
    with page.expect_download() as dl:
        page.click("#report-download")
    report = Path(dl.value.path()).read_text()
    assert dl.value.suggested_filename == "scorer-v1-report.html" and "scorer@1" in report

    # The incident: contain it into fallback mode.
    page.click('nav a:text-is("Incidents")')
    page.click('#incident-table a:text-is("#1")')
    page.wait_for_url(base + "/incidents/1")
    assert page.text_content("#state").strip() == "identified"
    assert w.charts_drawn() == 1
    page.select_option("#mode-select", "fallback")
    page.click("#contain-submit")
    page.wait_for_selector("#flash")
    assert page.text_content("#state").strip() == "contained"
    assert page.text_content("#mode").strip() == "fallback"
    w.shot("4-incident-contained")

    # The review queue: decide the first open item.
    page.click('nav a:text-is("Review queue")')
    first = page.locator("#open-items tbody tr").first
    item_id = int(first.get_attribute("id").split("-")[1])
    first.locator("select[name=label]").select_option("4")
    first.locator("input[name=note]").fill("a four, written small")
    first.locator("button").click()
    page.wait_for_selector("#flash")
    assert f"review item {item_id} decided as '4'" in page.text_content("#flash")
    assert page.locator(f"#decided-{item_id}").count() == 1
    w.shot("5-review-decided")

    page.click('nav a:text-is("Deployments")')
    assert page.get_attribute(f"#deployment-{DEPLOYMENT} [data-mode]", "data-mode") == "fallback"
    assert w.charts_drawn() == 4  # drift, alerts, traffic, per-feature PSI
    w.shot("6-deployments")
    w.close()

    assert w.problems == [], w.problems
    assert w.hosts == {urlsplit(base).netloc}, w.hosts
    with transaction(world.settings) as s:
        assert s.execute(select(Approval.approved_by)).scalars().all() == ["rita"]
        assert s.get(Incident, 1).transitions[-1].actor == "rita"  # type: ignore[union-attr]
        assert s.execute(select(Deployment.mode)).scalar_one() == "fallback"
        item = s.get(ReviewItem, item_id)
        assert item.reviewer == "rita" and item.label == "4"  # type: ignore[union-attr]
        assert s.execute(select(AuditEvent.actor).where(AuditEvent.action == "report.write")).scalar_one() == "rita"


def test_viewer_is_offered_nothing_to_change(world, base, browser):
    w = Watched(browser, base)
    w.sign_in(world.tokens["viewer"])
    for path in ("/models/legacy@1", "/incidents/1", "/review", "/inventory"):
        w.page.goto(base + path)
        w.charts_drawn()
        forms = w.page.locator("main form").count()
        assert forms == 0, (path, forms)
    assert "legacy@1" in w.page.text_content("#lineage")
    w.shot("7-viewer-inventory")
    w.close()
    assert w.problems == [], w.problems
    assert w.hosts == {urlsplit(base).netloc}, w.hosts
