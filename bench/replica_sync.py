"""Cost of sharing per-client watcher state between gateway replicas (``share_states``).

Sequential predict requests of 5 rows from one client against an in-process uvicorn gateway,
with and without the per-batch pull / write of ``watch_states``; on SQLite, and on PostgreSQL
when ``RISKLOOP_TEST_PG_URL`` is set. Prints median and p95 latency per request.

    .venv/bin/python bench/replica_sync.py [N_REQUESTS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_gateway_support import make_world, post, running_server  # noqa: E402

from riskloop.service import GatewayOptions  # noqa: E402


def measure(world, name: str, key: str, n: int, share: bool) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    X = world.parts["X_live"]
    opts = GatewayOptions(refresh_s=0.2, checkpoint_s=0.5, share_states=share)
    with running_server(world.settings, opts) as gw:
        for i in range(10):  # warm-up
            post(gw, name, key, X[i * 5:i * 5 + 5])
        times = []
        for i in range(n):
            k = (i * 5) % (len(X) - 5)
            t = time.perf_counter()
            r = post(gw, name, key, X[k:k + 5])
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, r.text
    times.sort()
    return statistics.median(times) * 1e3, times[int(0.95 * len(times))] * 1e3


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    backends = [("sqlite", None)]
    pg = os.environ.get("RISKLOOP_TEST_PG_URL")
    schema = None
    if pg:
        schema = "b_" + uuid.uuid4().hex[:10]
        with sa.create_engine(pg).begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in pg else "?"
        backends.append(("postgresql", f"{pg}{sep}options=-csearch_path%3D{schema}"))
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for backend, url in backends:
                world = make_world(Path(tmp) / backend, Path(tmp) / "cache", db_url=url)
                world.deploy("bench", clients=("c1",))
                for share in (False, True):
                    med, p95 = measure(world, "bench", world.key("bench", "c1"), n, share)
                    print(f"{backend:10s} share_states={share!s:5s} median {med:6.2f} ms  p95 {p95:6.2f} ms")
    finally:
        if schema:
            with sa.create_engine(pg).begin() as conn:  # type: ignore[arg-type]
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")


if __name__ == "__main__":
    main()
