"""``scripts/demo-console.sh`` (the end of ``make demo``): it prints a URL and a sign-in token,
serves the console until interrupted, and refuses a folder without a store in one line."""

from __future__ import annotations

import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "demo-console.sh"


def _env(ws, **extra: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {**os.environ, **ws.env, "RISKLOOP_PYTHON": sys.executable, **extra}


def _lines(proc: subprocess.Popen[str], until: str, timeout: float = 120) -> str:
    """Read the process's output until a line contains ``until``."""
    # raw reads from the pipe: a buffered readline() can leave lines in Python's buffer that
    # the selector never reports again
    fd = proc.stdout.fileno()  # type: ignore[union-attr]
    sel = selectors.DefaultSelector()
    sel.register(fd, selectors.EVENT_READ)
    out, deadline = "", time.monotonic() + timeout
    while until not in out:
        if time.monotonic() > deadline or proc.poll() is not None and not sel.select(0):
            raise AssertionError(f"no '{until}' in the output:\n{out}")
        if sel.select(0.5):
            chunk = os.read(fd, 65536)
            if not chunk and proc.poll() is not None:
                continue
            out += chunk.decode("utf-8", "replace")
    return out


@pytest.mark.slow  # two CLI processes start (token create, serve): most of its time is imports
def test_demo_console_serves_with_a_printed_token(ready_sqlite):
    ws = ready_sqlite
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(["bash", str(SCRIPT), str(ws.path)], env=_env(ws, RISKLOOP_CONSOLE_PORT=str(port)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        out = _lines(proc, "risk console at")
        url = re.search(r"risk console:\s+(http://127\.0\.0\.1:\d+/)", out).group(1)  # type: ignore[union-attr]
        token = re.search(r"sign in with:\s+(rlk_\S+)", out).group(1)  # type: ignore[union-attr]
        assert url == f"http://127.0.0.1:{port}/"
        with httpx.Client(base_url=url, timeout=30, follow_redirects=False) as c:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if c.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the console did not answer"
                time.sleep(0.2)
            form = c.get("/signin")
            nonce = re.search(r'name="signin" value="([0-9a-f]+)"', form.text).group(1)  # type: ignore[union-attr]
            r = c.post("/signin", data={"signin": nonce, "next": "/", "token": token})
            assert r.status_code == 303, r.text
            home = c.get("/")
            assert home.status_code == 200 and "demo · admin" in home.text
            assert "No model registered" in home.text and "no data" in home.text
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
    listed = ws.invoke("token", "list", "--json")
    assert '"owner": "demo"' in listed.output and '"role": "admin"' in listed.output


def test_demo_console_refuses_a_folder_without_a_store(sqlite_workspace):
    ws = sqlite_workspace
    res = subprocess.run(["bash", str(SCRIPT), str(ws.path)], env=_env(ws), capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "holds no riskloop store" in lines[0]
