"""Gateway benchmark: the guarded gateway vs a plain FastAPI endpoint serving the same model.

    .venv/bin/python bench/gateway.py [--requests 3000] [--concurrency 16] [--rounds 3]
                                      [--rows 1] [--epochs 10]

Both servers run as their own uvicorn processes on 127.0.0.1 with one intra-op torch thread
(what ``riskloop serve`` sets), serving the demo CNN trained on scikit-learn's digits:

- ``plain``: ``POST /predict`` parses the JSON, runs the model in the thread pool and
  returns the top class and its probability; nothing else.
- ``gateway``: ``riskloop serve`` with validation, API-key check, the watchdogs (input drift
  and prediction drift windows, input outliers, confidence CUSUM, per-client query
  patterns), review routing, Prometheus metrics and the group-committed prediction log.
- ``gateway+squeezing``: the same on a model version that carries a feature-squeezing
  defence; the detector runs the model once per squeezer (measured separately).

The load generator is bounded: ``--concurrency`` keep-alive connections (one API key per
connection, as one client each) send ``--requests`` requests in total, each one row of the
digits test split (``--rows`` rows per request). Rounds alternate the targets, so each
gateway round has a plain round measured just before it under the same background load; the
table shows medians over rounds of throughput, latency, server CPU time per request (from
``/proc``, all threads) and the paired ratios to the plain endpoint (goal: throughput >= 0.8
without the squeezing detector).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool

POLICY = """version: 1
name: bench
rules:
  evasion:
    required: false
  supply_chain:
    required: false
"""


# -- the plain endpoint (run as: bench/gateway.py --plain-server PORT MODEL_DIR) -------------


def plain_app(model_dir: Path) -> Any:
    from riskloop.targets.loader import _load_safetensors

    target = _load_safetensors(model_dir)
    classes = list(target.classes)
    app = FastAPI()

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        body = await request.json()
        X = np.asarray(body["inputs"], dtype=np.float32).reshape(-1, 1, 8, 8)
        proba = await run_in_threadpool(target.predict_proba, X)
        top = proba.argmax(axis=1)
        return {"predictions": [{"answer": classes[int(k)], "confidence": float(proba[i, k])}
                                for i, k in enumerate(top)]}

    return app


def serve_plain(port: int, model_dir: Path) -> None:
    import torch
    import uvicorn

    torch.set_num_threads(1)
    uvicorn.run(plain_app(model_dir), host="127.0.0.1", port=port, log_level="warning")


# -- setup ---------------------------------------------------------------------------------


def build(ws: Path, *, epochs: int) -> dict[str, Any]:
    """Train the demo CNN, register it (and a squeezing-defended copy), deploy both."""
    import torch

    from riskloop import load_settings
    from riskloop.demo import digits
    from riskloop.inventory import assets
    from riskloop.mitigate.feature_squeezing import DEFENCE_FILE, BitDepth, FeatureSqueezingDetector
    from riskloop.monitor import deployments as deps
    from riskloop.store import db
    from riskloop.store.db import transaction
    from riskloop.targets.loader import _load_safetensors
    from riskloop.targets.torchspec import save_torch_model

    torch.set_num_threads(1)
    X_tr, X_te, y_tr, y_te = digits.digits_split(random_state=0)
    X_hold, y_hold, X_live = X_te[:360], y_te[:360], X_te[360:]
    module, spec = digits.train_digits_cnn(X_tr, y_tr, random_state=0, epochs=epochs)
    model = save_torch_model(ws / "models" / "cnn", module, spec)
    squeezed = ws / "models" / "cnn-squeezed"
    shutil.copytree(model, squeezed)
    det = FeatureSqueezingDetector(target=_load_safetensors(model), squeezers=[BitDepth(bits=2)])
    det.calibrate(X_hold).to_json(squeezed / DEFENCE_FILE)
    digits.save_npz(ws / "data" / "train.npz", X_tr, y_tr)
    digits.save_npz(ws / "data" / "holdout.npz", X_hold, y_hold)
    (ws / "riskloop-policy.yaml").write_text(POLICY)
    os.environ["RISKLOOP_WORKSPACE"] = str(ws)
    settings = load_settings(workspace=ws)
    db.upgrade(settings)
    keys: dict[str, list[str]] = {}
    with transaction(settings) as s:
        assets.register_dataset(s, path=ws / "data" / "train.npz", name="train", target="y", actor="bench")
        assets.register_dataset(s, path=ws / "data" / "holdout.npz", name="holdout", target="y", actor="bench")
        assets.register_model(s, path=model, name="cnn", framework="torch", domain="general",
                              trained_on=["train@1"], actor="bench")
        assets.register_model(s, path=squeezed, name="cnn", framework="torch", domain="general",
                              trained_on=["train@1"], derived_from="cnn@1", actor="bench")
    for name, ref in (("bench", "cnn@1"), ("bench-sq", "cnn@2")):
        with transaction(settings) as s:
            deps.create(s, settings, model=ref, name=name, actor="bench", holdout="holdout@1")
            keys[name] = [deps.create_key(s, name=name, client=f"client{i}", actor="bench")[1]
                          for i in range(64)]
    return {"model": model, "keys": keys, "X_live": X_live}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(cmd: list[str], port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("server did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its threads (Linux /proc; 0 elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- the load generator --------------------------------------------------------------------

_LENGTH = re.compile(rb"content-length:\s*(\d+)", re.IGNORECASE)


async def _worker(port: int, requests: list[bytes], latencies: list[float], errors: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for req in requests:
            t = time.perf_counter()
            writer.write(req)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            m = _LENGTH.search(head)
            await reader.readexactly(int(m.group(1)) if m else 0)
            latencies.append(time.perf_counter() - t)
            if status != 200:
                errors.append(status)
    finally:
        writer.close()


def _request(path: str, body: bytes, key: str | None) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n" + (f"X-API-Key: {key}\r\n" if key else "") + "\r\n")
    return head.encode() + body


def load(port: int, path: str, keys: list[str | None], X: np.ndarray, *, total: int,
         concurrency: int, rows: int, offset: int) -> dict[str, float]:
    per = total // concurrency
    plans = []
    for c in range(concurrency):
        start_row = (offset + c * 97) % len(X)
        reqs = []
        for k in range(per):
            i = (start_row + k * rows) % (len(X) - rows)
            body = json.dumps({"inputs": X[i:i + rows].tolist()}).encode()
            reqs.append(_request(path, body, keys[c % len(keys)]))
        plans.append(reqs)
    latencies: list[float] = []
    errors: list[int] = []

    async def main() -> float:
        t = time.perf_counter()
        await asyncio.gather(*(_worker(port, p, latencies, errors) for p in plans))
        return time.perf_counter() - t

    wall = asyncio.run(main())
    lat = np.asarray(latencies) * 1000
    return {"requests": len(latencies), "errors": len(errors), "seconds": wall,
            "throughput": len(latencies) / wall, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99))}


# -- main ----------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--rows", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--plain-server", nargs=2, metavar=("PORT", "MODEL_DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.plain_server:
        serve_plain(int(args.plain_server[0]), Path(args.plain_server[1]))
        return
    ws = Path(tempfile.mkdtemp(prefix="riskloop-bench-gw-"))
    t = time.perf_counter()
    world = build(ws, epochs=args.epochs)
    print(f"setup (train, register, deploy and calibrate twice): {time.perf_counter() - t:.1f} s",
          flush=True)
    env = {**os.environ, "RISKLOOP_WORKSPACE": str(ws), "RISKLOOP_ACTOR": "bench"}
    ports = {"plain": free_port(), "gateway": free_port()}
    procs = [
        start([sys.executable, __file__, "--plain-server", str(ports["plain"]), str(world["model"])],
              ports["plain"], env),
        start([sys.executable, "-m", "riskloop", "--workspace", str(ws), "serve", "--port",
               str(ports["gateway"])], ports["gateway"], env),
    ]
    targets = {
        "plain": (ports["plain"], "/predict", [None]),
        "gateway": (ports["gateway"], "/v1/deployments/bench/predict", world["keys"]["bench"]),
        "gateway+squeezing": (ports["gateway"], "/v1/deployments/bench-sq/predict",
                              world["keys"]["bench-sq"]),
    }
    X = world["X_live"]
    pids = {"plain": procs[0].pid, "gateway": procs[1].pid, "gateway+squeezing": procs[1].pid}
    results: dict[str, list[dict[str, float]]] = {k: [] for k in targets}
    try:
        for port, path, keys in targets.values():  # warm-up: imports, first batches
            load(port, path, keys, X, total=min(400, args.requests), concurrency=4, rows=args.rows, offset=0)
        for r in range(args.rounds):
            for name, (port, path, keys) in targets.items():
                cpu0 = cpu_seconds(pids[name])
                res = load(port, path, keys, X, total=args.requests, concurrency=args.concurrency,
                           rows=args.rows, offset=r * 13)
                res["cpu_ms"] = (cpu_seconds(pids[name]) - cpu0) * 1000 / max(res["requests"], 1)
                results[name].append(res)
                print(f"round {r + 1:2d} {name:18s} {res['throughput']:8.1f} req/s  p50 {res['p50_ms']:6.2f} ms"
                      f"  p99 {res['p99_ms']:7.2f} ms  server CPU {res['cpu_ms']:5.2f} ms/req"
                      f"  errors {res['errors']}", flush=True)
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)
        for p in procs:
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
    summary = {}
    print(f"\nmachine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"load average at the end {os.getloadavg()[0]:.1f}; {args.requests} requests x "
          f"{args.rounds} rounds, {args.concurrency} connections, {args.rows} row(s) per request")
    print(f"{'target':18s} {'req/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'CPU ms/req':>11s} "
          f"{'throughput vs plain':>20s} {'CPU vs plain':>13s}")
    for name, runs in results.items():
        # paired ratios: each round's plain run was measured right before, under the same load
        ratio = median(x["throughput"] / p["throughput"] for x, p in zip(runs, results["plain"], strict=True))
        cpu_ratio = median(x["cpu_ms"] / p["cpu_ms"] for x, p in zip(runs, results["plain"], strict=True))
        row = {"throughput": median(x["throughput"] for x in runs),
               "p50_ms": median(x["p50_ms"] for x in runs), "p99_ms": median(x["p99_ms"] for x in runs),
               "cpu_ms_per_request": median(x["cpu_ms"] for x in runs), "throughput_ratio": ratio,
               "cpu_ratio": cpu_ratio, "errors": sum(x["errors"] for x in runs)}
        summary[name] = row
        print(f"{name:18s} {row['throughput']:9.1f} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} "
              f"{row['cpu_ms_per_request']:11.2f} {ratio:20.2f} {cpu_ratio:13.2f}")
    print(json.dumps(summary))
    shutil.rmtree(ws, ignore_errors=True)


if __name__ == "__main__":
    main()
