"""Demo MONITOR act: deploy, serve on loopback, attack, contain, recover (paper 5.2, 5.2.2).

The newest demo model version the gate passes (GO, a sign-off counting) is deployed in
``active`` mode with fallback rules; when none passes, the newest version is deployed in
``shadow`` mode (the rules answer, the model runs and is watched), because only a passing
model may answer. A real gateway runs in a thread on a free 127.0.0.1 port and is always
stopped at the end. The traffic simulator sends clean traffic, then an extraction-style
client, then a drift; the incident they open is contained into fallback and recovered:
retrained with the deployed version's recipe (adversarial training at 16/255), re-assessed and
gated. The gate refuses the new version until it is signed, has privacy evidence and the risk
officer's sign-off (the high tier's rules), so the demo does what an operator does — signs,
audits, signs off (:func:`~riskloop.demo.steps_approve.certify`) — and redeploys it with
``recover(model=...)``; clean traffic shows the model answering again, and closing the
incident gives the Mean Time to Restore.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..govern import approvals, policy
from ..inventory.assets import list_models
from ..monitor import deployments as deps
from ..monitor import incidents, recovery
from ..monitor.simulate import TrafficSimulator
from ..store.db import dispose_engines, transaction
from .steps_approve import certify
from .steps_mitigate import AT_PARAMS, DEMO_POINTS

if TYPE_CHECKING:
    from .scenario import DemoContext

DEPLOYMENT = "cheques"
RULES = """version: 1
default: "0"
rules:
  - name: ink-in-centre
    when: "x27 > 0.5 and x36 > 0.5"
    answer: "8"
"""


@contextmanager
def serve_in_thread(settings: Any) -> Iterator[str]:
    """A real uvicorn gateway on a free loopback port, stopped on exit; yields its URL."""
    import uvicorn

    from ..service import GatewayOptions, create_app

    # the demo compresses minutes into seconds: one alert per kind and client every 2 s
    # (the default is 60 s), so the drift after the extraction client raises its own alert
    app = create_app(settings, options=GatewayOptions(refresh_s=0.2, checkpoint_s=1.0,
                                                      cooldown_s=2.0))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    try:
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the demo gateway did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()
        dispose_engines()


def _deployable(settings: Any, pol: Any) -> tuple[str, str]:
    from .scenario import MODEL_NAME

    with transaction(settings) as s:
        versions = sorted((m for m in list_models(s) if m.name == MODEL_NAME),
                          key=lambda m: m.version, reverse=True)
        for mv in versions:
            if approvals.evaluate(s, mv, pol).decision == "GO":
                return mv.ref, "active"
        return versions[0].ref, "shadow"


def step_monitor(ctx: DemoContext) -> Iterator[tuple[str, dict[str, Any]]]:
    settings = ctx.settings
    pol = policy.load(None, workspace=settings.workspace)
    model, mode = _deployable(settings, pol)
    rules = settings.workspace / "fallback-rules.yaml"
    rules.write_text(RULES)
    started = time.monotonic()
    with transaction(settings) as s:
        dep = deps.create(s, settings, model=model, name=DEPLOYMENT, actor=settings.actor,
                          mode=mode, fallback=rules, holdout=ctx.refs.get("test"), window=200,
                          random_state=ctx.random_state)
        info = {"deployment": dep.name, "model": model, "mode": mode,
                "why": "the gate passes" if mode == "active" else
                "no version passes the gate yet: the rules answer, the model is watched"}
    yield "deploy", info
    with serve_in_thread(settings) as url:
        runs = {}
        for scenario, cap in (("clean", 40), ("extraction", 30), ("drift", 100)):
            sim = TrafficSimulator(scenario=scenario, rate=200, duration=20, max_requests=cap,
                                   random_state=ctx.random_state)
            out = sim.run(settings, deployment=DEPLOYMENT, url=url)
            runs[scenario] = out
            yield f"traffic {scenario}", {
                "requests": out.requests, "status": out.status, "served_by": out.served_by,
                "alerts": ", ".join(sorted({a["kind"] for a in out.alerts})) or "none",
                "incidents": [f"#{i['id']} {i['classification']} ({i['state']})" for i in out.incidents]}
        with transaction(settings) as s:
            open_ = incidents.open_incidents(s, deps.get(s, DEPLOYMENT))
            inc = incidents.incident_dict(open_[-1]) if open_ else None
        if inc is None:
            yield "incident", {"opened": False, "seconds": round(time.monotonic() - started, 1)}
            return
        yield "incident", {"id": inc["id"], "classification": inc["classification"],
                           "severity": inc["severity"], "summary": inc["summary"],
                           "state": inc["state"], "mode": inc["mode"],
                           "signals": len(inc["signals"])}
        if inc["state"] == "identified":
            with transaction(settings) as s:
                incidents.contain(s, incidents.get_incident(s, inc["id"]), actor=settings.actor)
        # retrain with the recipe the deployed version was built with, so the replacement
        # keeps the robustness the policy asks for (a from-scratch retrain would lose it)
        rep = recovery.recover(settings, incident_id=inc["id"], actor=settings.actor,
                               method="adversarial-training", params=dict(AT_PARAMS),
                               limit=DEMO_POINTS, random_state=ctx.random_state)
        yield "recover", {"method": rep.method, "new_model": rep.new_model, "gate": rep.decision,
                          "blocking": ", ".join(rep.failing) or "sign-off pending",
                          "redeployed": rep.restored, "mode": rep.mode}
        if not rep.restored and rep.new_model:
            # the high tier needs a signature, privacy evidence and a person's sign-off
            cert = certify(ctx, rep.new_model, pol)
            yield "sign-off", cert
            if cert.get("signed_off"):
                rep = recovery.recover(settings, incident_id=inc["id"], actor=settings.actor,
                                       model=rep.new_model, random_state=ctx.random_state)
                yield "redeploy", {"model": rep.new_model, "gate": rep.decision,
                                   "redeployed": rep.restored, "mode": rep.mode,
                                   "time_to_restore_s": None if rep.time_to_restore_seconds is None
                                   else round(rep.time_to_restore_seconds, 1)}
        if rep.restored:
            after = TrafficSimulator(scenario="clean", rate=200, duration=20, max_requests=20,
                                     random_state=ctx.random_state + 1).run(
                settings, deployment=DEPLOYMENT, url=url)
            yield "traffic after recovery", {"requests": after.requests, "status": after.status,
                                             "served_by": after.served_by}
    mttr = None
    if rep.restored:
        with transaction(settings) as s:
            incidents.close(s, incidents.get_incident(s, rep.incident), actor=settings.actor,
                            note="demo: sanitized, retrained, gated and redeployed")
            mttr = incidents.mttr(s)["mttr_seconds"]
    yield "mttr", {"restored": rep.restored,
                   "mttr_seconds": None if mttr is None else round(mttr, 1),
                   "note": "closed" if rep.restored else
                   "not restored: the deployment stays in fallback until a version passes the gate",
                   "seconds": round(time.monotonic() - started, 1)}
